"""Who may attend to whom: causal, padding, segments (packed documents) and the prefix-LM mask."""
from __future__ import annotations


def attention_mask(q_idx_BxL, k_idx_BxS, q_seg_BxL=None, k_seg_BxS=None, k_prefix_BxS=None):
    """Boolean mask_Bx1xLxS: who may attend to whom.

    Causal on absolute indices; a key with segment id 0 is padding; queries see
    keys of their own segment only; a key marked in `k_prefix_BxS` is visible to
    every query of its segment (prefix-LM: bidirectional over the prompt, causal
    after it; the prompt of each packed example is its own prefix).
    """
    q = q_idx_BxL[:, :, None]
    k = k_idx_BxS[:, None, :]
    allowed = k <= q
    if k_prefix_BxS is not None:
        allowed = allowed | k_prefix_BxS[:, None, :].astype(bool)
    if k_seg_BxS is not None:
        allowed = allowed & (k_seg_BxS[:, None, :] != 0)
        if q_seg_BxL is not None:
            allowed = allowed & (q_seg_BxL[:, :, None] == k_seg_BxS[:, None, :])
    return allowed[:, None, :, :]
