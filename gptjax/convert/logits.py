"""The fp32 logits of a workdir's model for given token ids: what parity checks compare."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gptjax.errors import ConfigError


def parse_ids(raw: str, vocab_size: int, max_len: int) -> list[int]:
    """`3,1,4` -> [3, 1, 4], refusing non-integers, ids outside the vocabulary and over-long input."""
    try:
        ids = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--ids {raw!r}: expected comma-separated integers, e.g. 3,1,4,1,5") from None
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if not ids or bad or len(ids) > max_len:
        raise ConfigError(f"--ids: need 1..{max_len} ids in [0, {vocab_size}); got {len(ids)} ids"
                          + (f", out of range: {bad[:5]}" if bad else ""))
    return ids


def workdir_logits(workdir, ids: str | None = None, text: str | None = None) -> dict:
    """{"ids": [...], "vocab_size": V, "logits": L rows of V floats} for `ids` (or `text`, encoded)."""
    from gptjax.model.transformer import Transformer
    from gptjax.train.restore import load_run

    exp, params, tokenizer = load_run(workdir)
    if exp.media is not None:
        raise ConfigError(f"{workdir} is a multimodal run: logits here are for text decoders")
    spec = exp.model
    if text is not None:
        try:
            ids = ",".join(map(str, tokenizer.encode(text)))
        except ValueError as e:
            raise ConfigError(f"--text cannot be encoded by this run's tokenizer: {e}") from None
    id_list = parse_ids(ids or "", spec.vocab_size, spec.max_seq_len)
    # full fp32 matmuls: GPUs would otherwise use TF32 and drift from the reference by ~1e-3
    with jax.default_matmul_precision("highest"):
        out = Transformer(spec).apply({"params": params}, jnp.asarray([id_list], jnp.int32))
    logits_LxV = np.asarray(out[0], np.float32)
    return {"workdir": str(workdir), "ids": id_list, "vocab_size": spec.vocab_size,
            "logits": [[float(v) for v in row] for row in logits_LxV]}
