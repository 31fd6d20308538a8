"""Who may attend to whom: causal, padding, segments (packed documents) and the prefix-LM mask."""
from __future__ import annotations


def attention_mask(q_idx_BxL, k_idx_BxS, q_seg_BxL=None, k_seg_BxS=None, prefix_len_B=None):
    """Boolean mask_Bx1xLxS: who may attend to whom.

    Causal on absolute indices; a key with segment id 0 is padding; queries see
    keys of their own segment only; with `prefix_len_B`, keys before the prefix
    end are visible to every query of the sequence (prefix-LM: bidirectional over
    the prefix, causal after it).
    """
    q = q_idx_BxL[:, :, None]
    k = k_idx_BxS[:, None, :]
    allowed = k <= q
    if prefix_len_B is not None:
        allowed = allowed | (k < prefix_len_B[:, None, None])
    if k_seg_BxS is not None:
        allowed = allowed & (k_seg_BxS[:, None, :] != 0)
        if q_seg_BxL is not None:
            allowed = allowed & (q_seg_BxL[:, :, None] == k_seg_BxS[:, None, :])
    return allowed[:, None, :, :]
