"""lm-evaluation-harness (`lm-eval`, the optional extra requirements-lm-eval.txt) scoring a gptjax workdir.

`register()` gives lm-eval's model class for gptjax, registered as model "gptjax" with model_args
`workdir=DIR[,batch_size=N][,max_gen_toks=N]`; `run(...)` is what scripts/lm_eval_harness.py does.
Requests are answered as lm-eval's Hugging Face model answers them:

  loglikelihood          (context, continuation): trailing spaces of the context move to the
                         continuation; the pair is encoded whole and split at the context's length;
                         an empty context is the tokenizer's <eos> (a char tokenizer has none: its
                         "\\n" stands in); a context past the model's window keeps its latest tokens
  loglikelihood_rolling  a document over lm-eval's rolling windows of the model's context: every
                         token predicted once, with as much context as the window holds
  generate_until         greedy KV-cache decoding of at most `max_gen_toks` tokens, cut at <eos> and at
                         the first `until` string; past the window, decoding goes on in rounds of at
                         most half a window from the latest tokens (nanoGPT's crop)

lm_eval is imported only when asked for, so gptjax imports without the extra.
"""
from __future__ import annotations

import difflib
import json
import pathlib

import jax
import numpy as np

from gptjax import atomic
from gptjax.errors import ConfigError, DataError
from gptjax.model.decode import decode
from gptjax.model.scoring import loglikelihood, width_bucket
from gptjax.model.transformer import Transformer
from gptjax.tasks.text_eval import prompt_batch
from gptjax.train.restore import load_run

MODEL_NAME = "gptjax"
REQUIREMENTS = "requirements-lm-eval.txt"
_registered: dict = {}


def import_lm_eval():
    """lm_eval's `LM` base class and `register_model`, or a ConfigError saying how to install them."""
    try:
        from lm_eval.api.model import LM
        from lm_eval.api.registry import register_model
    except ImportError as e:
        raise ConfigError(f"lm-evaluation-harness is not installed ({e}); it is an optional extra: "
                          f"pip install -r {REQUIREMENTS}") from None
    return LM, register_model


def register():
    """lm-eval's model class for gptjax workdirs, registered under MODEL_NAME (once per process)."""
    lm_base, register_model = import_lm_eval()
    if "cls" not in _registered:
        cls = type("GptjaxLM", (WorkdirLM, lm_base), {"__doc__": WorkdirLM.__doc__, "__module__": __name__})
        _registered["cls"] = register_model(MODEL_NAME)(cls)
    return _registered["cls"]


def positive_int(name: str, value) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n <= 0 or str(n) != str(value).strip():
        raise ConfigError(f"{name}={value}: expected a positive integer")
    return n


class WorkdirLM:
    """A gptjax run answering lm-eval's requests (mixed with lm_eval's `LM` by `register`).

    `device` and `max_batch_size` are accepted because lm-eval passes them to every model; JAX
    places the arrays on its default device, and batches are `batch_size` rows.
    """

    def __init__(self, workdir, batch_size=32, max_gen_toks=256, device=None, max_batch_size=None):
        super().__init__()
        self.batch_size = positive_int("batch_size", batch_size)
        self.max_gen_toks = positive_int("max_gen_toks", max_gen_toks)
        self.exp, self.params, self.tokenizer = load_run(workdir)
        if self.exp.media is not None:
            raise ConfigError(f"{workdir} is a multimodal run; lm-eval scores text models")
        self.spec = self.exp.model
        # a task run trained with data.attention=prefix reads its contexts as bidirectional prefixes
        self.prefix = getattr(self.exp.data, "attention", "causal") == "prefix"

    def encode(self, text: str) -> list[int]:
        try:
            return list(self.tokenizer.encode(text))
        except ValueError as e:
            raise DataError(f"a request's text cannot be encoded by this run's {self.tokenizer.name} "
                            f"tokenizer: {e}") from None

    @property
    def prefix_id(self) -> int:
        """What an empty context is: <eos>, the boundary between training documents."""
        if self.tokenizer.eos_id is not None:
            return self.tokenizer.eos_id
        try:
            newline = self.tokenizer.encode("\n")
        except ValueError:
            newline = []
        if len(newline) != 1:
            raise DataError(f"this run's {self.tokenizer.name} tokenizer has no <eos> and no single-token "
                            "newline to stand for an empty context; give every request a context")
        return newline[0]

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) as lm-eval's Hugging Face model splits them."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:  # a word's leading space belongs to the word (BPE merges it), so to the continuation
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        if not context:
            return [self.prefix_id], self.encode(continuation)
        whole, head = self.encode(context + continuation), self.encode(context)
        return head, whole[len(head):]

    def score_pairs(self, pairs) -> list[tuple[float, bool]]:
        """(log P(continuation | context), greedy) per (context ids, continuation ids)."""
        out = [(0.0, True)] * len(pairs)  # an empty continuation is certain
        todo = [i for i, (_, continuation) in enumerate(pairs) if continuation]
        scored = loglikelihood(self.params, self.spec, [pairs[i] for i in todo], self.batch_size,
                               prefix_context=self.prefix) if todo else []
        for i, answer in zip(todo, scored):
            out[i] = answer
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.score_pairs([self.encode_pair(*r.args) for r in requests])

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        windows, owner = [], []
        for i, r in enumerate(requests):
            ids = self.encode(r.args[0])
            if not ids:
                continue  # an empty document has log-likelihood 0
            for window in get_rolling_token_windows(ids, self.prefix_id, self.spec.max_seq_len, 1):
                windows.append(make_disjoint_window(window))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (logprob, _) in zip(owner, self.score_pairs(windows)):
            totals[i] += logprob
        return totals

    def generation_job(self, context: str, kwargs) -> tuple[list[int], list[str], int]:
        """(prompt ids, stop strings, most new tokens) of one generate_until request."""
        kwargs = dict(kwargs or {})
        until = kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0) > 0:
            raise ConfigError(f"generation_kwargs {kwargs}: the gptjax adapter decodes greedily only "
                              "(do_sample: false, temperature: 0)")
        n_new = positive_int("max_gen_toks", kwargs.get("max_gen_toks", self.max_gen_toks))
        return self.encode(context) or [self.prefix_id], [u for u in until if u], n_new

    def finish(self, ids: list[int], until: list[str]) -> str:
        """The text of `ids` up to <eos> and before the first stop string."""
        eos = self.tokenizer.eos_id
        text = self.tokenizer.decode(ids[:ids.index(eos)] if eos is not None and eos in ids else ids)
        cut = min([text.find(u) for u in until if u in text], default=len(text))
        return text[:cut]

    def greedy(self, prompts: list[list[int]], n_new: int, done) -> list[list[int]]:
        """Up to `n_new` greedy tokens after each prompt; `done(i, ids)` lets row i stop after a round."""
        window = self.spec.max_seq_len
        model, out = Transformer(self.spec, decode=True), [[] for _ in prompts]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        for lo in range(0, len(order), self.batch_size):
            live = order[lo:lo + self.batch_size]
            while live:  # rows of a chunk advance together, so they share the round's length
                k = min(n_new - len(out[live[0]]), max(1, window // 2))
                rows = [(prompts[i] + out[i])[-(window - k):] for i in live]
                rows += [rows[-1]] * (self.batch_size - len(rows))  # one compiled shape per width
                batch = prompt_batch(rows, width_bucket(max(map(len, rows)), window - k), self.prefix)
                new = np.asarray(decode(self.params, batch, jax.random.key(0), model=model, n_new=k))
                for r, i in enumerate(live):
                    out[i] += new[r].tolist()
                live = [i for i in live if len(out[i]) < n_new and not done(i, out[i])]
        return out

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        jobs = [self.generation_job(*r.args) for r in requests]
        answers = [""] * len(jobs)
        eos = self.tokenizer.eos_id
        for n_new in sorted({n for _, _, n in jobs}):  # one decoding length per group of requests
            idx = [i for i, job in enumerate(jobs) if job[2] == n_new]

            def done(r, ids, idx=idx):
                until = jobs[idx[r]][1]
                return (eos is not None and eos in ids) or any(u in self.tokenizer.decode(ids) for u in until)

            for r, ids in enumerate(self.greedy([jobs[i][0] for i in idx], n_new, done)):
                answers[idx[r]] = self.finish(ids, jobs[idx[r]][1])
        return answers


def check_tasks(manager, tasks: list[str]) -> list[str]:
    """The task names, expanded by lm-eval's glob matching; a ConfigError names any it does not know."""
    known = manager.all_tasks
    unknown = [t for t in tasks if not manager.match_tasks([t]) and not pathlib.Path(t).is_file()]
    if unknown:
        hints = {t: difflib.get_close_matches(t, known, n=3) for t in unknown}
        raise ConfigError("unknown lm-eval task(s): " + "; ".join(
            f"{t}" + (f" (did you mean {', '.join(h)}?)" if h else "") for t, h in hints.items())
            + " -- give --include_path for a folder of your own task YAMLs")
    return [m for t in tasks for m in (manager.match_tasks([t]) or [t])]


def run(workdir, tasks: list[str], *, include_path=None, limit=None, batch_size: int = 32, max_gen_toks: int = 256,
        num_fewshot=None, bootstrap_iters: int = 100000, log_samples: bool = False) -> dict:
    """lm-eval's `simple_evaluate` of the run in `workdir` on `tasks`: its results dict."""
    register()
    from lm_eval import evaluator
    from lm_eval.tasks import TaskManager

    if include_path is not None and not pathlib.Path(include_path).is_dir():
        raise ConfigError(f"--include_path {include_path}: no such folder (it holds task YAML files)")
    manager = TaskManager(include_path=None if include_path is None else str(include_path))
    names = check_tasks(manager, list(tasks))
    return evaluator.simple_evaluate(
        model=MODEL_NAME, model_args={"workdir": str(workdir), "batch_size": batch_size, "max_gen_toks": max_gen_toks},
        tasks=names, task_manager=manager, limit=limit, num_fewshot=num_fewshot, bootstrap_iters=bootstrap_iters,
        log_samples=log_samples)


def report(results: dict, output=None) -> str:
    """lm-eval's results table (and groups table); with `output`, the whole results as JSON there."""
    from lm_eval.utils import handle_non_serializable, make_table

    if output:
        atomic.write_text(pathlib.Path(output), json.dumps(results, indent=1, default=handle_non_serializable,
                                                           ensure_ascii=False) + "\n")
    tables = [make_table(results)] + ([make_table(results, "groups")] if results.get("groups") else [])
    return "\n".join(tables)
