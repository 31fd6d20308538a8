"""Line memory (model.line_memory): past the line-local layers, earlier lines are seen by their newline only."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import Experiment, ModelSpec, TaskData
from gptjax.errors import ConfigError
from gptjax.model.lines import LineSegments, line_memory_branches
from gptjax.model.transformer import Transformer
from helpers.reference_decode import cached_logits

NL = 3
SPEC = ModelSpec(flavour="llama", n_layer=2, n_head=4, d_model=32, vocab_size=50, max_seq_len=32,
                 line_local_layers=1, line_break_id=NL, line_memory=True)


def row(*lines):
    return [t for line in lines for t in (*line, NL)]


def params_of(spec, seed=0):
    return nn.meta.unbox(Transformer(spec).init(jax.random.key(seed), jnp.zeros((2, 16), jnp.int32)))["params"]


def test_newlines_are_on_the_shared_branch_and_words_on_their_own_lines():
    tokens = jnp.asarray([[5, 6, NL, 7, NL, 8, 9, 0]])
    segs = jnp.asarray([[1, 1, 1, 1, 1, 2, 2, 0]])
    lines = LineSegments(NL).apply({}, tokens, segs)
    np.testing.assert_array_equal(line_memory_branches(tokens, lines, NL), [[1, 1, 0, 2, 0, 3, 3, 0]])


@pytest.mark.parametrize("attention", ["flash", "xla"])
def test_a_memory_layer_sees_an_earlier_line_only_through_its_newline(attention):
    spec = dataclasses.replace(SPEC, attention=attention)
    params = params_of(spec)
    # with the line-local layer made the identity (all its weights zero: the residual passes through),
    # an earlier line's newline carries nothing of the line's words, so later lines cannot see them
    params = {**params, "h_0": jax.tree.map(jnp.zeros_like, params["h_0"])}
    a = jnp.asarray([row([11, 12, 13], [14, 15], [16, 17, 18])])
    b = a.at[0, 1].set(40)  # a word of the first line
    la, lb = (Transformer(spec).apply({"params": params}, x) for x in (a, b))
    np.testing.assert_allclose(la[:, 4:], lb[:, 4:], atol=1e-6)
    assert np.abs(np.asarray(la[:, 1:3] - lb[:, 1:3])).max() > 1e-3  # its own line sees it
    # the same weights without line memory: the later layer sees the word itself
    plain = dataclasses.replace(spec, line_memory=False)
    pa, pb = (Transformer(plain).apply({"params": params}, x) for x in (a, b))
    assert np.abs(np.asarray(pa[:, 4:] - pb[:, 4:])).max() > 1e-3


def test_decoding_with_the_cache_equals_the_full_forward():
    params = params_of(SPEC)
    full_row = jnp.asarray([row([11, 12], [13, 14, 15], [16], [17, 18, 19])] * 2)
    full = Transformer(SPEC).apply({"params": params}, full_row)
    np.testing.assert_allclose(cached_logits(params, SPEC, full_row, prefill=4), full, atol=1e-5)


def test_line_memory_needs_line_local_layers_and_refuses_shared_prompts():
    with pytest.raises(ConfigError, match="line_memory=true needs model.line_local_layers"):
        Experiment(model=dataclasses.replace(SPEC, line_local_layers=0)).validate()
    with pytest.raises(ConfigError, match="cannot be combined"):
        Experiment(model=SPEC, data=TaskData(task="qa", share_prompts=True)).validate()
