"""Ensembles (gptjax/model/ensemble.py): the members' probabilities averaged token by token, in greedy
decoding, beam search and log-likelihoods, checked against the mixture computed by hand from each
member's own forward passes; and the runs an ensemble refuses to join."""
import dataclasses
import itertools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import Experiment, ModelSpec, TaskData
from gptjax.errors import ConfigError
from gptjax.model.beam import beam_search, length_penalty
from gptjax.model.decode import decode, text_prompt
from gptjax.model.ensemble import Ensemble, stack
from gptjax.model.scoring import loglikelihood
from gptjax.model.transformer import Transformer
from gptjax.train.restore import ensemble_mismatch

SPEC = ModelSpec(n_layer=2, n_head=2, d_model=16, vocab_size=4, max_seq_len=12, attention="xla", tie_embeddings=False)


def member(seed: int, sharpness: float):
    params = flax.linen.meta.unbox(Transformer(SPEC).init(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32))["params"])
    params["lm_head"]["kernel"] = params["lm_head"]["kernel"] * sharpness  # sharp distributions, as trained ones
    return params


@pytest.fixture(scope="module")
def members():
    """Two members that disagree: their greedy continuations differ on the prompts below."""
    return [member(3, 60.0), member(11, 40.0)]


def mixture_logprobs(members, rows) -> np.ndarray:
    """log of the members' mean next-token probability at every position of `rows` [N, L] -> [N, L, V]."""
    lps = [jax.nn.log_softmax(Transformer(SPEC).apply({"params": p}, jnp.asarray(rows)), -1) for p in members]
    return np.asarray(jax.scipy.special.logsumexp(jnp.stack(lps), axis=0) - np.log(len(members)))


def sequence_scores(members, prompt, n) -> dict:
    """{seq: log P_mixture(seq | prompt)} for every sequence of n tokens, the mixture taken token by token."""
    seqs = np.asarray(list(itertools.product(range(SPEC.vocab_size), repeat=n)))
    full = np.concatenate([np.broadcast_to(prompt, (len(seqs), len(prompt))), seqs], axis=1)[:, :-1]
    lp = mixture_logprobs(members, full)[:, len(prompt) - 1:]
    picked = np.take_along_axis(lp, seqs[..., None], -1)[..., 0]
    return {tuple(s): float(v) for s, v in zip(seqs.tolist(), picked.sum(-1))}


def test_one_member_twice_is_that_member(members):
    prompt = text_prompt(np.asarray([[1, 2, 3], [2, 2, 1]]))
    single, score = beam_search(members[0], prompt, model=Transformer(SPEC, decode=True), n_new=5, beam=3,
                                eos_id=0, alpha=0.6)
    twice, score2 = beam_search(stack([members[0]] * 2, ["a", "a"]), prompt,
                                model=Ensemble(Transformer(SPEC, decode=True), 2), n_new=5, beam=3, eos_id=0,
                                alpha=0.6, batch_axis=1)
    np.testing.assert_array_equal(single, twice)
    np.testing.assert_allclose(score, score2, atol=1e-5)


def test_greedy_decoding_follows_the_mixture_not_either_member(members):
    prompts = np.asarray([[1, 2, 3], [3, 1, 0], [2, 0, 2]])
    model = Ensemble(Transformer(SPEC, decode=True), 2)
    got = np.asarray(decode(stack(members, ["a", "b"]), text_prompt(prompts), jax.random.key(0), model=model, n_new=4))
    rows = prompts
    for _ in range(4):  # by hand: full forward passes of each member, mixed, argmax
        rows = np.concatenate([rows, mixture_logprobs(members, rows)[:, -1].argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(got, rows[:, 3:])
    alone = [np.asarray(decode(p, text_prompt(prompts), jax.random.key(0), model=Transformer(SPEC, decode=True),
                               n_new=4)) for p in members]
    assert not np.array_equal(alone[0], alone[1])  # the members disagree, so the check above means something


@pytest.mark.parametrize("eos, alpha", [(2, 0.0), (1, 1.0), (0, 0.6)])
def test_beam_search_finds_the_mixtures_exhaustive_best(members, eos, alpha):
    n_new = 4
    for prompt in ([1, 2, 3], [3, 1, 0]):
        scored = {seq: lp for n in range(1, n_new + 1) for seq, lp in sequence_scores(members, prompt, n).items()
                  if eos not in seq[:-1] and (n == n_new or seq[-1] == eos)}
        best = max((lp / float(length_penalty(jnp.asarray(len(seq)), alpha)), seq) for seq, lp in scored.items())
        out, score = beam_search(stack(members, ["a", "b"]), text_prompt(np.asarray([prompt])),
                                 model=Ensemble(Transformer(SPEC, decode=True), 2), n_new=n_new, beam=64, eos_id=eos,
                                 alpha=alpha, batch_axis=1)
        got = np.asarray(out[0]).tolist()
        got = got[:got.index(eos) + 1] if eos in got else got
        assert tuple(got) == best[1] and float(score[0]) == pytest.approx(best[0], abs=1e-4)


def test_loglikelihood_of_an_ensemble_is_the_mixtures(members):
    requests = [([1, 2, 3], [0, 1]), ([3], [2]), ([2, 2, 1, 1, 0, 3, 3, 1, 2, 0], [1, 1, 2])]  # the last is cut
    got = loglikelihood(stack(members, ["a", "b"]), SPEC, requests, batch_size=2, members=2)
    for (context, cont), (lp, greedy) in zip(requests, got):
        keep = (context + cont)[-(SPEC.max_seq_len + 1):]
        mixed = mixture_logprobs(members, np.asarray([keep[:-1]]))[0]
        at = range(len(keep) - 1 - len(cont), len(keep) - 1)
        assert lp == pytest.approx(sum(mixed[i, keep[i + 1]] for i in at), abs=1e-4)
        assert greedy == all(mixed[i].argmax() == keep[i + 1] for i in at)
    singles = [loglikelihood(p, SPEC, requests, batch_size=2) for p in members]
    assert all(abs(a[0] - b[0]) > 1e-3 for a, b in zip(got, singles[0]))  # not just the first member's


def test_members_of_another_shape_are_refused(members):
    other = flax.linen.meta.unbox(Transformer(dataclasses.replace(SPEC, d_model=32)).init(
        jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"])
    with pytest.raises(ConfigError, match="run_b's parameters are not shaped like run_a's"):
        stack([members[0], other], ["run_a", "run_b"])


@pytest.mark.parametrize("change, words", [
    (lambda e: dataclasses.replace(e, model=dataclasses.replace(e.model, n_layer=3)), ["model.n_layer (3 against 2)"]),
    (lambda e: dataclasses.replace(e, data=dataclasses.replace(e.data, attention="causal")),
     ["data.attention ('causal' against 'prefix')"]),
    (lambda e: dataclasses.replace(e, data=dataclasses.replace(e.data, target_lang="fr")),
     ["data.target_lang ('fr' against 'de')"]),
], ids=["shape", "attention", "languages"])
def test_runs_that_read_or_write_examples_differently_cannot_join(change, words):
    first = Experiment(model=ModelSpec(n_layer=2), data=TaskData(task="translate", attention="prefix"))
    assert ensemble_mismatch(first, dataclasses.replace(first, model=dataclasses.replace(first.model, dropout=0.3)),
                             "b", "a") is None  # dropout does not act when scoring
    why = ensemble_mismatch(first, change(first), "runs/b", "runs/a")
    assert why is not None and why.startswith("runs/b") and all(w in why for w in words), why
