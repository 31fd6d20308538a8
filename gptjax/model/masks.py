"""Who may attend to whom: causal, padding, segments (packed documents), the prefix-LM mask, branches."""
from __future__ import annotations


def attention_mask(q_idx_BxL, k_idx_BxS, q_seg_BxL=None, k_seg_BxS=None, k_prefix_BxS=None, q_branch_BxL=None,
                   k_branch_BxS=None):
    """Boolean mask_Bx1xLxS: who may attend to whom.

    Causal on absolute indices; a key with segment id 0 is padding; queries see
    keys of their own segment only; a key marked in `k_prefix_BxS` is visible to
    every query of its segment (prefix-LM: bidirectional over the prompt, causal
    after it; the prompt of each packed example is its own prefix). A key on a branch (id > 0) is
    seen only by queries of the same branch, a key on branch 0 by every later query: examples that
    share a prompt lay it once on branch 0 and each its own ending on a branch of its own
    (gptjax/data/shared_prompts.py), so each ending sees what it would have seen alone.
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
    if k_branch_BxS is not None:
        k_branch = k_branch_BxS[:, None, :]
        allowed = allowed & ((k_branch == 0) | (k_branch == q_branch_BxL[:, :, None]))
    return allowed[:, None, :, :]
