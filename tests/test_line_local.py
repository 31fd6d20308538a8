"""Line-local layers (model.line_local_layers): a token of those layers sees its own line only."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import Experiment, ModelSpec
from gptjax.errors import ConfigError
from gptjax.model.decode import decode
from gptjax.model.lines import LineSegments
from gptjax.model.transformer import Transformer
from gptjax.train.setup import newline_id, resolved_model
from helpers.reference_decode import cached_logits

NL = 3  # the newline token of these tests
SPEC = ModelSpec(flavour="llama", n_layer=2, n_head=4, d_model=32, vocab_size=50, max_seq_len=32,
                 line_local_layers=1, line_break_id=NL)


def params_of(spec, seed=0):
    return nn.meta.unbox(Transformer(spec).init(jax.random.key(seed), jnp.zeros((2, 16), jnp.int32)))["params"]


def row(*lines):
    """Token ids of lines, each ended by the newline token."""
    return [t for line in lines for t in (*line, NL)]


def test_line_ids_restart_at_each_newline_and_each_packed_example():
    tokens = jnp.asarray([[5, 6, NL, 7, NL, 8, 9, 10, 11, 0]])
    segs = jnp.asarray([[1, 1, 1, 1, 1, 1, 2, 2, 2, 0]])  # two packed examples, then padding
    ids = LineSegments(NL).apply({}, tokens, segs)
    # the newline belongs to the line it ends; a new example starts a line; padding is 0
    np.testing.assert_array_equal(ids, [[1, 1, 1, 2, 2, 3, 4, 4, 4, 0]])


def test_a_local_layer_does_not_see_other_lines_and_a_global_layer_does():
    local = dataclasses.replace(SPEC, n_layer=1, line_local_layers=1)
    params = params_of(local)
    a = jnp.asarray([row([11, 12, 13], [14, 15], [16, 17, 18])])
    b = a.at[0, 1].set(40)  # change a token of the first line
    la, lb = (Transformer(local).apply({"params": params}, x) for x in (a, b))
    np.testing.assert_allclose(la[:, 4:], lb[:, 4:], atol=1e-6)  # later lines: unchanged
    assert np.abs(np.asarray(la[:, 1:4] - lb[:, 1:4])).max() > 1e-3  # its own line: changed
    # the same weights with the layer global: later lines see the change
    glob = dataclasses.replace(local, line_local_layers=0)
    ga, gb = (Transformer(glob).apply({"params": params}, x) for x in (a, b))
    assert np.abs(np.asarray(ga[:, 4:] - gb[:, 4:])).max() > 1e-3


def test_decoding_with_the_cache_equals_the_full_forward_across_new_lines():
    params = params_of(SPEC)
    full_row = jnp.asarray([row([11, 12], [13, 14, 15], [16], [17, 18, 19])] * 2)  # 14 tokens
    full = Transformer(SPEC).apply({"params": params}, full_row)
    # tokens 5 and 9 are newlines fed one at a time: the line count carries on through the cache
    np.testing.assert_allclose(cached_logits(params, SPEC, full_row, prefill=4), full, atol=1e-5)


def test_right_padded_prompts_decode_as_each_prompt_alone():
    """The batched decoder pads short prompts on the right; a short prompt's continuation must
    still count its lines from its own last token, not from the padding."""
    params = params_of(SPEC)
    long = row([11, 12], [13, 14]) + [15, 16]  # ends mid-line
    short = row([21]) + [22]
    pad = len(long) - len(short)
    forced = jnp.asarray([[30, NL, 31], [32, 33, NL]])  # the tokens fed after the prompts

    def step_logits(prompts, segs, lengths, forced_BxN):
        model = Transformer(SPEC, decode=True)
        x = jnp.asarray(prompts, jnp.int32)
        cache = jax.tree.map(jnp.zeros_like, model.init(jax.random.key(0), x)["cache"])
        pos = jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape)
        _, v = model.apply({"params": params, "cache": cache}, x, pos, jnp.asarray(segs, jnp.int32),
                           mutable=["cache"])
        out = []
        for i in range(forced_BxN.shape[1]):
            logits, v = model.apply({"params": params, "cache": v["cache"]}, forced_BxN[:, i:i + 1],
                                    jnp.asarray(lengths)[:, None] + i, method="step", mutable=["cache"])
            out.append(logits[:, 0])
        return jnp.stack(out, axis=1)

    together = step_logits([long, short + [0] * pad], [[1] * len(long), [1] * len(short) + [0] * pad],
                           [len(long), len(short)], forced)
    for i, prompt in enumerate((long, short)):
        alone = step_logits([prompt], [[1] * len(prompt)], [len(prompt)], forced[i:i + 1])
        np.testing.assert_allclose(together[i], alone[0], atol=1e-5)
    # and the greedy decoder, which pads the same way, runs on such a batch
    batch = {"inputs": jnp.asarray([long, short + [0] * pad], jnp.int32),
             "positions": jnp.asarray([list(range(len(long)))] * 2, jnp.int32),
             "segment_ids": jnp.asarray([[1] * len(long), [1] * len(short) + [0] * pad], jnp.int32),
             "prompt_len": jnp.asarray([len(long), len(short)], jnp.int32)}
    assert decode(params, batch, jax.random.key(0), model=Transformer(SPEC, decode=True), n_new=4).shape == (2, 4)


class Chars:
    def __init__(self, alphabet):
        self.alphabet = alphabet

    def encode(self, text):
        if any(c not in self.alphabet for c in text):
            raise ValueError("not in the alphabet")
        return [self.alphabet.index(c) for c in text]


def test_the_newline_id_comes_from_the_tokenizer_or_the_run_is_refused():
    exp = Experiment(model=dataclasses.replace(SPEC, line_break_id=-1, vocab_size=0))
    assert newline_id(Chars("ab\n")) == 2
    assert resolved_model(exp, 50, newline_id(Chars("ab\n"))).line_break_id == 2
    assert newline_id(Chars("ab")) is None
    with pytest.raises(ConfigError, match="line_local_layers=1 needs a newline token"):
        resolved_model(exp, 50, newline_id(Chars("ab")))
    with pytest.raises(ConfigError, match="exceeds model.n_layer"):
        Experiment(model=dataclasses.replace(SPEC, line_local_layers=3)).validate()
    with pytest.raises(ConfigError, match="scan_layers=false"):
        Experiment(model=dataclasses.replace(SPEC, scan_layers=True)).validate()
