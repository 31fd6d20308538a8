"""The lm-evaluation-harness adapter (gptjax/tasks/lm_eval_adapter.py) against the model's own numbers.

A 150-step byte-level run on a generated corpus is scored three ways: the adapter's answers to
lm-eval requests, a full forward pass of the Transformer with log_softmax (no KV cache, no batching,
no padding) written here, and a whole offline lm-eval run of the local tasks in tests/lm_eval_task/,
whose reported metrics are recomputed from the reference. lm-eval is an optional extra
(requirements-lm-eval.txt); without it only the checks of its absence run.
"""
import functools
import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from gptjax.model.transformer import Transformer
from helpers.reference_decode import generate_without_cache

try:
    import lm_eval  # noqa: F401
    from lm_eval.api.instance import Instance
except ImportError:
    lm_eval = None
needs_lm_eval = pytest.mark.skipif(lm_eval is None, reason="lm-eval is an optional extra, not installed here: "
                                   "pip install -r requirements-lm-eval.txt")

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASKS = ROOT / "tests" / "lm_eval_task"
WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have "
         "an they you were her she there been one all we their when what no out up so said would").split()


def script_env(root: pathlib.Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GPTJAX_DATA_DIR"}
    # offline: datasets and the Hub must not reach for the network, and their caches stay in tmp
    env.update(GPTJAX_CACHE_DIR=str(root / "cache"), JAX_PLATFORMS="cpu", HF_HOME=str(root / "hf"),
               HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 150-step run on a generated corpus with the byte tokenizer (which has <eos>): enough training
    that greedy decoding writes varied words rather than one repeated character."""
    root = tmp_path_factory.mktemp("lm_eval")
    rng = __import__("random").Random(0)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
                                for _ in range(4000)) + "\n")
    sets = ("data.dataset=text", f"data.files={corpus}", "data.tokenizer=byte", "train.steps=150",
            "train.checkpoint_every=150", "train.eval_every=150", "train.eval_batches=2", "model.n_layer=1",
            "train.sample_tokens=8", "mesh.cpu_devices=1", "schedule.warmup_steps=10")
    done = subprocess.run([sys.executable, "scripts/train.py", "experiments/shakespeare_char_cpu.py", "--workdir",
                           str(root / "W"), "--no_progress", *[f"--set={kv}" for kv in sets]],
                          cwd=ROOT, env=script_env(root), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    from gptjax.train.restore import load_run

    exp, params, tokenizer = load_run(root / "W")
    assert tokenizer.eos_id is not None
    return {"root": root, "workdir": root / "W", "spec": exp.model, "params": params, "tok": tokenizer}


@pytest.fixture(scope="module")
def adapter(trained):
    from gptjax.tasks.lm_eval_adapter import MODEL_NAME, register

    cls = register()
    assert lm_eval.api.registry.get_model(MODEL_NAME) is cls
    return cls.create_from_arg_string(f"workdir={trained['workdir']},batch_size=4", {"device": None})


@functools.lru_cache
def forward(spec):
    return jax.jit(lambda params, buf: Transformer(spec).apply({"params": params}, buf))


def token_logprobs(run, inputs: list[int]) -> np.ndarray:
    """log_softmax of the model's logits after each of `inputs` (at most one window), one forward pass."""
    spec = run["spec"]
    assert 0 < len(inputs) <= spec.max_seq_len
    buf = np.zeros((1, spec.max_seq_len), np.int32)  # causal: what follows the inputs changes nothing
    buf[0, :len(inputs)] = inputs
    logits = np.asarray(forward(spec)(run["params"], buf), np.float64)[0, :len(inputs)]
    top = logits.max(-1, keepdims=True)
    return logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))


def reference_loglikelihood(run, context: list[int], continuation: list[int]) -> tuple[float, bool]:
    """Summed log P of the continuation after the context (the latest window of it), and greediness."""
    seq = (context + continuation)[-(run["spec"].max_seq_len + 1):]
    logp = token_logprobs(run, seq[:-1])
    n = min(len(continuation), len(seq) - 1)
    rows, targets = range(len(seq) - 1 - n, len(seq) - 1), seq[-n:]
    return float(sum(logp[r, t] for r, t in zip(rows, targets))), all(logp[r].argmax() == t
                                                                      for r, t in zip(rows, targets))


def reference_rolling(run, ids: list[int]) -> float:
    """A document's log-likelihood: window after window of `max_seq_len` predicted tokens, each window
    reading the `max_seq_len` tokens before its last one (<eos> first), as lm-eval's HF model does."""
    window, padded = run["spec"].max_seq_len, [run["tok"].eos_id] + ids
    total = 0.0
    for start in range(0, len(ids), window):
        end = min(start + window, len(ids))
        inputs = padded[max(0, end - window):end]
        logp = token_logprobs(run, inputs)
        total += sum(logp[len(inputs) - (end - i), ids[i]] for i in range(start, end))
    return float(total)


def reference_greedy_text(run, ids: list[int], n_new: int, until: list[str]) -> str:
    """Greedy decoding without a cache, in rounds of at most half a window past the context, cut at
    <eos> and the first `until` string."""
    spec, tok = run["spec"], run["tok"]
    new = []
    while len(new) < n_new:
        k = min(n_new - len(new), spec.max_seq_len // 2)
        context = np.asarray([(ids + new)[-(spec.max_seq_len - k):]], np.int32)
        out = generate_without_cache(run["params"], spec, context, k, jax.random.key(0), temperature=0.0)
        new += np.asarray(out)[0, context.shape[1]:].tolist()
    if tok.eos_id in new:
        new = new[:new.index(tok.eos_id)]
    text = tok.decode(new)
    return text[:min([text.find(u) for u in until if u in text], default=len(text))]


def requests(kind: str, args: list[tuple]) -> list:
    return [Instance(kind, {}, a, i) for i, a in enumerate(args)]


@pytest.mark.slow
@needs_lm_eval
def test_loglikelihood_equals_the_models_own(trained, adapter):
    tok, window = trained["tok"], trained["spec"].max_seq_len
    long_context = " ".join(WORDS)  # about three windows: only its latest window is read
    assert len(tok.encode(long_context)) > 2 * window
    cases = [("she said that", " the"), ("they were in", " the house"), (long_context, " were"),
             ("x", " that the" * 3), ("when he", " was")]
    got = adapter.loglikelihood(requests("loglikelihood", cases))
    want = [reference_loglikelihood(trained, tok.encode(c), tok.encode(x)) for c, x in cases]
    for (c, x), (lp, greedy), (ref_lp, ref_greedy) in zip(cases, got, want):
        assert lp == pytest.approx(ref_lp, rel=1e-4, abs=1e-4), (c[-30:], x)
        assert greedy == ref_greedy, (c[-30:], x)
    assert all(lp < 0 for lp, _ in got)
    # an empty context is <eos>; a trailing space of the context is scored with the continuation
    (empty, _), (spaced, _) = adapter.loglikelihood(requests("loglikelihood", [("", "the of"), ("she said ", "that")]))
    assert empty == pytest.approx(reference_loglikelihood(trained, [tok.eos_id], tok.encode("the of"))[0], rel=1e-4)
    assert spaced == pytest.approx(reference_loglikelihood(trained, tok.encode("she said"), tok.encode(" that"))[0],
                                   rel=1e-4)


@pytest.mark.slow
@needs_lm_eval
def test_loglikelihood_rolling_scores_every_token_once(trained, adapter):
    tok, window = trained["tok"], trained["spec"].max_seq_len
    docs = ["she said that the one", " ".join(WORDS), ""]
    n = len(tok.encode(docs[1]))
    assert n > 2 * window and n % window, n  # three windows, the last one partial
    got = adapter.loglikelihood_rolling(requests("loglikelihood_rolling", [(d,) for d in docs]))
    assert got[0] == pytest.approx(reference_loglikelihood(trained, [tok.eos_id], tok.encode(docs[0]))[0], rel=1e-4)
    assert got[1] == pytest.approx(reference_rolling(trained, tok.encode(docs[1])), rel=1e-4)
    assert got[2] == 0.0


@pytest.mark.slow
@needs_lm_eval
def test_generate_until_stops_at_until_and_matches_greedy_decoding(trained, adapter):
    tok, window = trained["tok"], trained["spec"].max_seq_len
    free = reference_greedy_text(trained, tok.encode("she said that the "), 20, [])
    assert " " in free.strip(), f"the model should write several words: {free!r}"
    mid = free[3:5]  # a stop string that first occurs inside the text
    assert free.find(mid) >= 2, free
    cases = [("she said that the ", {"until": [" "], "max_gen_toks": 20}),
             ("she said that the ", {"until": ["qqqq", mid], "max_gen_toks": 20}),
             ("she said that the ", {"until": [mid, free[1:]], "max_gen_toks": 20}),  # the earliest cut wins
             ("was with ", {"until": "\x01", "max_gen_toks": 100}),  # past the 64-token window: two rounds
             ("they", {"until": ["\n"], "max_gen_toks": 7}),
             ("", {"until": [" "], "max_gen_toks": 9})]  # 6 requests, batch_size 4: two chunks
    got = adapter.generate_until(requests("generate_until", cases))
    want = [reference_greedy_text(trained, tok.encode(c) or [tok.eos_id], kw["max_gen_toks"],
                                  [kw["until"]] if isinstance(kw["until"], str) else kw["until"]) for c, kw in cases]
    assert got == want
    assert got[0] == free[:free.index(" ")] and got[1] == free[:free.index(mid)] and got[2] == free[:1]
    assert len(tok.encode(got[3])) > window, f"decoding should have gone past one window: {got[3]!r}"


@pytest.mark.slow
@needs_lm_eval
def test_whole_lm_eval_run_on_local_tasks_reports_the_models_own_scores(trained):
    out = trained["root"] / "results.json"
    names = "gptjax_words_choice,gptjax_words_next,gptjax_words_rolling"
    proc = subprocess.run([sys.executable, "scripts/lm_eval_harness.py", "--workdir", str(trained["workdir"]),
                           "--tasks", names, "--include_path", str(TASKS), "--batch_size", "8", "--output", str(out),
                           "--log_samples", "--bootstrap_iters", "10"], cwd=ROOT, env=script_env(trained["root"]),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "gptjax_words_choice" in proc.stdout and "exact_match" in proc.stdout, proc.stdout[-2000:]
    results = json.loads(out.read_text())["results"]
    tok = trained["tok"]
    docs = [json.loads(line) for line in (TASKS / "words.jsonl").read_text().splitlines()]
    picked = [int(np.argmax([reference_loglikelihood(trained, tok.encode(d["context"]), tok.encode(" " + c))[0]
                             for c in d["choices"]])) for d in docs]
    acc = np.mean([p == d["label"] for p, d in zip(picked, docs)])
    answers = [reference_greedy_text(trained, tok.encode(d["context"] + " "), 12, [" "]) for d in docs]
    exact = np.mean([a == d["target"] for a, d in zip(answers, docs)])
    lls = [reference_loglikelihood(trained, [tok.eos_id], tok.encode(d["context"]))[0] for d in docs]
    bits = -sum(lls) / sum(len(d["context"].encode()) for d in docs) / math.log(2)
    assert results["gptjax_words_choice"]["acc,none"] == pytest.approx(acc)
    assert results["gptjax_words_next"]["exact_match,none"] == pytest.approx(exact)
    assert results["gptjax_words_rolling"]["bits_per_byte,none"] == pytest.approx(bits, rel=1e-4)
    samples = json.loads(out.read_text())["samples"]["gptjax_words_next"]
    assert [s["filtered_resps"][0] for s in sorted(samples, key=lambda s: s["doc_id"])] == answers


@pytest.mark.slow
@needs_lm_eval
def test_unknown_task_is_refused_before_the_model_loads(trained):
    proc = subprocess.run([sys.executable, "scripts/lm_eval_harness.py", "--workdir", str(trained["root"] / "nope"),
                           "--tasks", "gptjax_words_choise", "--include_path", str(TASKS)], cwd=ROOT,
                          env=script_env(trained["root"]), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown lm-eval task") and "gptjax_words_choice" in last, last


def test_without_lm_eval_gptjax_imports_and_the_script_says_what_to_install(tmp_path):
    hide = "import sys; sys.modules['lm_eval'] = None; "  # an import of lm_eval now raises ImportError
    probe = subprocess.run([sys.executable, "-c", hide + "import gptjax.tasks.lm_eval_adapter as a; "
                            "print(sorted(m for m in sys.modules if m.startswith('lm_eval')))"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0 and probe.stdout.strip() == "['lm_eval']", probe.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-c", hide + "import runpy; sys.path.insert(0, 'scripts'); sys.argv = ['lm_eval_harness.py', "
                           f"'--workdir', {str(tmp_path)!r}, '--tasks', 'hellaswag']; "
                           "runpy.run_path('scripts/lm_eval_harness.py', run_name='__main__')"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: lm-evaluation-harness is not installed") and "requirements-lm-eval.txt" in last


def test_an_empty_context_without_eos_is_a_newline():
    from gptjax.data.tokenizers import CharTokenizer
    from gptjax.errors import DataError
    from gptjax.tasks.lm_eval_adapter import WorkdirLM

    lm = object.__new__(WorkdirLM)  # only the tokenizer matters here, no run to load
    lm.tokenizer = CharTokenizer.from_text("ab\n ")
    assert lm.prefix_id == lm.tokenizer.encode("\n")[0]
    assert lm.encode_pair("", "ab") == ([lm.prefix_id], lm.tokenizer.encode("ab"))
    lm.tokenizer = CharTokenizer.from_text("ab ")
    with pytest.raises(DataError, match="no <eos> and no single-token newline"):
        lm.prefix_id
