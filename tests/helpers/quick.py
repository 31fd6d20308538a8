"""Parameter lists whose quick part runs under `-m "not slow"` and whose rest is marked slow.

The quick suite keeps one case of each check (or a few cases of a grid); the full suite,
`bash scripts/test.sh` and CI, runs every case.
"""
import itertools

import pytest


def quick_first(values, ids=None) -> list:
    """`values` as pytest params: the first in the quick suite, the others slow."""
    ids = ids or [None] * len(values)
    return [pytest.param(*(v if isinstance(v, tuple) else (v,)), id=i, marks=() if n == 0 else pytest.mark.slow)
            for n, (v, i) in enumerate(zip(values, ids))]


def quick_grid(*axes, quick) -> list:
    """Every combination of `axes` as pytest params; those in `quick` in the quick suite, the rest slow."""
    return [pytest.param(*combo, marks=() if combo in quick else pytest.mark.slow)
            for combo in itertools.product(*axes)]
