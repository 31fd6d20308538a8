"""Downstream tasks: the readers, the packed target-only sequences, beam search, the metrics, and
scripts/evaluate.py on a small trained task model (all on data made here)."""
import dataclasses
import gzip
import itertools
import json
import os
import pathlib
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import Experiment, ModelSpec, TaskData
from gptjax.data import task_files
from gptjax.errors import ConfigError, DataError
from gptjax.model.beam import beam_search, length_penalty
from gptjax.model.decode import decode, text_prompt
from gptjax.model.scoring import loglikelihood
from gptjax.model.transformer import Transformer
from gptjax.tasks.metrics import babi_scores, translation_scores
from helpers.quick import quick_first

ROOT = pathlib.Path(__file__).resolve().parents[1]

BABI = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Where is Daniel? \thallway\t4
1 Sandra travelled to the office.
2 Where is Sandra? \toffice\t1
"""


# ------------------------------------------------------------------ readers

def test_parallel_files_plain_and_gzipped_are_read_in_order(tmp_path):
    (tmp_path / "p.en").write_text("A dog runs.\nTwo cats sleep.\n")
    (tmp_path / "p.de.gz").write_bytes(gzip.compress("Ein Hund rennt.\nZwei Katzen schlafen.\n".encode()))
    pairs = task_files.read_parallel(tmp_path / "p", "en", "de")
    assert [(p.source, p.target) for p in pairs] == [("A dog runs.", "Ein Hund rennt."),
                                                     ("Two cats sleep.", "Zwei Katzen schlafen.")]


@pytest.mark.parametrize("en, de, words", [
    ("a\nb\n", "x\n", ["has 2 lines", "has 1"]),
    ("a\n\nc\n", "x\ny\nz\n", ["p.en:2: empty line"]),
    (None, "x\n", ["no en side", "p.en.gz"]),
], ids=["unaligned", "empty_line", "missing_side"])
def test_parallel_files_that_do_not_fit_are_refused_naming_file_and_line(tmp_path, en, de, words):
    if en is not None:
        (tmp_path / "p.en").write_text(en)
    (tmp_path / "p.de").write_text(de)
    with pytest.raises(DataError) as e:
        task_files.read_parallel(tmp_path / "p", "en", "de")
    assert all(w in str(e.value) for w in words), str(e.value)


def test_glue_tsv_labels_become_words(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\na gem of a film \t1\ndull and slow \t0\n")
    rows = task_files.read_glue_tsv(path)
    assert [(r.source, r.target, r.group) for r in rows] == [("a gem of a film", "positive", 1),
                                                            ("dull and slow", "negative", 0)]


@pytest.mark.parametrize("text, words", [
    ("sentence\tlabel\nfine film\t2\n", ["dev.tsv:2", "label '2'"]),
    ("text\tlabel\nfine film\t1\n", ["dev.tsv:1", "header"]),
    ("sentence\tlabel\nno label here\n", ["dev.tsv:2", "sentence<TAB>label"]),
], ids=["label_outside_set", "wrong_header", "missing_column"])
def test_glue_tsv_errors_name_file_and_line(tmp_path, text, words):
    (tmp_path / "dev.tsv").write_text(text)
    with pytest.raises(DataError) as e:
        task_files.read_glue_tsv(tmp_path / "dev.tsv")
    assert all(w in str(e.value) for w in words), str(e.value)


# a phrase treebank in SST-2's shape: whole sentences and, labelled on their own, pieces of them
TREEBANK = [("a gem of a film", 1), ("a gem", 1), ("of a film", 1), ("dull and slow going", 0), ("dull", 0),
            ("slow going", 0), ("the cast is good", 1), ("good", 1), ("the cast", 1),
            ("goodness knows why it drags", 0), ("it drags", 0), ("a film", 1)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_sentences_take_every_phrase_inside_them_out_of_training(tmp_path, seed):
    from gptjax.data.sentence_split import containing_sentences
    from gptjax.data.task_builder import read_splits
    texts = [s for s, _ in TREEBANK]
    sentences, owners = containing_sentences(texts)
    assert sorted(texts[i] for i in sentences) == sorted(
        ["a gem of a film", "dull and slow going", "the cast is good", "goodness knows why it drags"])
    assert [texts[sentences[o]] for o in owners[texts.index("good")]] == ["the cast is good"]  # not goodness
    assert len(owners[texts.index("a film")]) == 1
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in TREEBANK))
    cfg = TaskData(task="sentiment", folder=str(tmp_path), val_fraction=0.5, split_seed=seed, held_out_by="sentence")
    splits = read_splits(cfg, tmp_path)
    val = [ex.source for ex in splits["validation"]]
    train = [ex.source for ex in splits["train"]]
    assert len(val) == 2 and all(texts.index(v) in sentences for v in val)  # whole sentences only
    assert not any(f" {p} " in f" {v} " for p in train for v in val)  # nothing of them is trained on
    # every phrase that no held-out sentence holds still trains
    assert {p for p in texts if not any(f" {p} " in f" {v} " for v in val)} == set(train)
    assert {ex.target for ex in splits["validation"]} <= {"positive", "negative"}


def test_held_out_sentences_outside_sentiment_are_refused():
    exp = Experiment(model=ModelSpec(), data=TaskData(task="qa", held_out_by="sentence"))
    with pytest.raises(ConfigError, match="data.held_out_by=sentence"):
        exp.validate()
    with pytest.raises(ConfigError, match="data.sentence_copies=2"):
        Experiment(model=ModelSpec(), data=TaskData(task="qa", sentence_copies=2)).validate()


def test_sentence_copies_repeat_the_training_sentences_alone(tmp_path):
    from gptjax.data.task_builder import read_splits
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in TREEBANK))
    plain, copied = (read_splits(TaskData(task="sentiment", folder=str(tmp_path), val_fraction=0.5, split_seed=0,
                                          held_out_by="sentence", sentence_copies=k), tmp_path) for k in (0, 2))
    assert [ex.source for ex in copied["validation"]] == [ex.source for ex in plain["validation"]]
    train = [ex.source for ex in plain["train"]]
    whole = {p for p in train if not any(p != q and f" {p} " in f" {q} " for q in train)}
    assert len(whole) == 2  # the two sentences not held out
    counts = {p: [ex.source for ex in copied["train"]].count(p) for p in train}
    assert counts == {p: 3 if p in whole else 1 for p in train}
    assert {(ex.source, ex.target) for ex in copied["train"]} == {(ex.source, ex.target) for ex in plain["train"]}


def test_babi_questions_carry_their_story_and_task(tmp_path):
    path = tmp_path / "qa7_counting_test.txt"
    path.write_text(BABI)
    qs = task_files.read_babi(path)
    assert [(q.target, q.group, q.story) for q in qs] == [("bathroom", 7, 0), ("hallway", 7, 0), ("office", 7, 1)]
    assert qs[1].source == ("Mary moved to the bathroom.\nJohn went to the hallway.\n"
                            "Daniel went back to the hallway.\nWhere is Daniel?")
    assert qs[2].source == "Sandra travelled to the office.\nWhere is Sandra?"  # a new story forgets the old
    assert task_files.read_babi(path, context_lines=1)[1].source == "Daniel went back to the hallway.\nWhere is Daniel?"
    assert len(task_files.read_babi(tmp_path)) == 3  # a folder of qaN_ files
    aged = task_files.read_babi(path, line_ages=True)
    assert aged[1].source == ("3 Mary moved to the bathroom.\n2 John went to the hallway.\n"
                              "1 Daniel went back to the hallway.\nWhere is Daniel?")
    assert task_files.read_babi(path, 1, line_ages=True)[1].source == "1 Daniel went back to the hallway.\nWhere is Daniel?"


def test_a_qa_answer_is_written_in_the_pieces_its_story_uses(tmp_path):
    """The answer follows a newline; written bare, a SentencePiece model without a dummy prefix
    splits it into pieces the stories never use ("b athroom")."""
    from gptjax.data.task_formats import format_example
    from gptjax.data.tokenizers import train_sentencepiece

    path = tmp_path / "qa7_counting_test.txt"
    path.write_text(BABI)
    qs = task_files.read_babi(path)
    stories = [ex.source for ex in qs] * 50
    sp = train_sentencepiece(stories, tmp_path / "m", vocab_size=300, byte_fallback=False)
    for ex in qs:
        prompt, target = format_example("qa", ex)
        assert prompt == ex.source + "\n" and target.strip() == ex.target
        story = sp.encode(ex.source)
        answer = sp.encode(target)
        assert len(answer) == 1 and answer[0] in story, (ex.target, sp.decode(answer))
        assert sp.encode(ex.target) != answer  # the bare word is other pieces
    assert format_example("translate", qs[0])[1] == qs[0].target  # other tasks keep their targets


def test_babi_and_jsonl_errors_name_file_and_line(tmp_path):
    (tmp_path / "qa1_x_test.txt").write_text("1 Mary moved.\nWhere is Mary?\tkitchen\n")
    with pytest.raises(DataError, match=r"qa1_x_test.txt:2: expected 'ID text'"):
        task_files.read_babi(tmp_path / "qa1_x_test.txt")
    (tmp_path / "notes.txt").write_text(BABI)
    with pytest.raises(DataError, match="named qaN_"):
        task_files.read_babi(tmp_path / "notes.txt")
    (tmp_path / "t.jsonl").write_text('{"prompt": "a", "target": "b"}\n\n')
    with pytest.raises(DataError, match=r"t.jsonl:2: not a JSON object"):
        task_files.read_jsonl(tmp_path / "t.jsonl")
    with pytest.raises(DataError, match="does not exist"):
        task_files.read_jsonl(tmp_path / "missing.jsonl")


# ------------------------------------------------------------------ sequences

@pytest.fixture(scope="module")
def copy_task(tmp_path_factory):
    """A JSONL task whose target repeats the prompt's words in reverse: learnable in a few hundred steps."""
    root = tmp_path_factory.mktemp("copy_task")
    rng = np.random.default_rng(0)
    words = "red green blue black white pink gold grey".split()
    for name, n in (("train", 3000), ("validation", 200), ("test", 100)):
        with open(root / f"{name}.jsonl", "w") as f:
            for _ in range(n):
                seq = list(rng.choice(words, rng.integers(2, 5)))
                f.write(json.dumps({"prompt": " ".join(seq) + " =", "target": " ".join(seq[::-1])}) + "\n")
    return root


@pytest.mark.parametrize("attention", ["causal", "prefix"])
def test_packed_rows_learn_only_the_target_and_keep_examples_apart(copy_task, tmp_path, monkeypatch, attention):
    from gptjax.data.task_pipeline import TaskLMData

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    cfg = TaskData(task="jsonl", folder=str(copy_task), tokenizer="byte", attention=attention)
    data = TaskLMData(cfg, seq_len=40, seed=0)
    batch = next(data.train_batches(4, 0))
    tok = data.tokenizer
    for r in range(4):
        seg, mask = batch["segment_ids"][r], batch["loss_mask"][r]
        for s in set(seg.tolist()) - {0}:
            at = np.nonzero(seg == s)[0]
            text = tok.decode(batch["inputs"][r][at].tolist())  # <eos> decodes to nothing
            prompt, target = text[:text.index("=") + 1], text[text.index("=") + 1:]
            assert batch["positions"][r][at].tolist() == list(range(len(at)))
            # the loss covers exactly the target's tokens and <eos>, predicted within this example
            learned = batch["targets"][r][at][mask[at] > 0].tolist()
            assert learned[-1] == tok.eos_id and tok.decode(learned[:-1]) == target
            assert mask[at][:len(tok.encode(prompt)) - 1].sum() == 0
            if attention == "prefix":  # the prompt's tokens, and nothing else, are the example's prefix
                assert batch["prefix"][r][at].tolist() == [j < len(tok.encode(prompt)) for j in range(len(at))]
        assert attention == "prefix" or "prefix" not in batch
        assert mask[seg == 0].sum() == 0


def test_a_prompt_too_long_for_a_row_loses_its_oldest_tokens_and_says_so(tmp_path, monkeypatch, caplog):
    from gptjax.data.task_pipeline import TaskLMData

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    long = {"prompt": "".join(chr(ord("a") + i % 26) for i in range(60)) + "=", "target": "ok"}
    short = {"prompt": "ab=", "target": "ok"}
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in (long, long, short)))
    (tmp_path / "validation.jsonl").write_text(json.dumps(short) + "\n")
    with caplog.at_level("WARNING", logger="gptjax.data.task_pipeline"):
        data = TaskLMData(TaskData(task="jsonl", folder=str(tmp_path), tokenizer="byte"), seq_len=16, seed=0)
    warned = [r.getMessage() for r in caplog.records if "lose their oldest" in r.getMessage()]
    assert len(warned) == 1 and "2 of 3 train examples" in warned[0] and "(longest: 64)" in warned[0]
    row = data.row("train", [0])
    text = data.tokenizer.decode(row["inputs"].tolist() + [row["targets"][-1]])
    assert text.endswith("=ok") and long["prompt"].endswith(text[:-2])  # the end of the prompt survives
    assert row["loss_mask"].sum() == 3  # "o", "k", <eos>


# ------------------------------------------------------------------ decoding and scoring

@pytest.fixture(scope="module")
def peaky_model():
    """A tiny untied model whose output layer is scaled up, so that its distributions are sharp."""
    spec = ModelSpec(n_layer=2, n_head=2, d_model=16, vocab_size=4, max_seq_len=12, attention="xla",
                     tie_embeddings=False)
    params = flax.linen.meta.unbox(Transformer(spec).init(jax.random.key(3), jnp.zeros((1, 4), jnp.int32))["params"])
    params["lm_head"]["kernel"] = params["lm_head"]["kernel"] * 60
    return spec, params


def sequence_logprob(spec, params, prompt, seq) -> float:
    full = jnp.asarray([list(prompt) + list(seq)])[:, :-1]  # the last token is only predicted
    lp = jax.nn.log_softmax(Transformer(spec).apply({"params": params}, full)[0], -1)
    return float(sum(lp[len(prompt) - 1 + j, t] for j, t in enumerate(seq)))


def every_sequence_logprob(spec, params, prompt, n) -> dict:
    """{seq: log p(seq | prompt)} for every sequence of n tokens, scored in one forward pass."""
    seqs = np.asarray(list(itertools.product(range(spec.vocab_size), repeat=n)))
    full = np.concatenate([np.broadcast_to(prompt, (len(seqs), len(prompt))), seqs], axis=1)[:, :-1]
    lp = jax.nn.log_softmax(Transformer(spec).apply({"params": params}, jnp.asarray(full)), -1)
    picked = np.take_along_axis(np.asarray(lp[:, len(prompt) - 1:]), seqs[..., None], -1)[..., 0]
    return {tuple(s): float(v) for s, v in zip(seqs.tolist(), picked.sum(-1))}


@pytest.mark.parametrize("eos, alpha", quick_first([(2, 0.0), (1, 1.0), (3, 0.6), (0, 0.6)]))
def test_beam_search_finds_what_exhaustive_search_finds(peaky_model, eos, alpha):
    spec, params = peaky_model
    n_new = 4
    for prompt in ([1, 2, 3], [3, 1, 0]):
        scored = {seq: lp for n in range(1, n_new + 1) for seq, lp in every_sequence_logprob(spec, params, prompt, n).items()
                  if eos not in seq[:-1] and (n == n_new or seq[-1] == eos)}
        best = max((lp / float(length_penalty(jnp.asarray(len(seq)), alpha)), seq) for seq, lp in scored.items())
        assert sequence_logprob(spec, params, prompt, best[1]) == pytest.approx(scored[best[1]], abs=1e-4)
        out, score = beam_search(params, text_prompt(np.asarray([prompt])), model=Transformer(spec, decode=True),
                                 n_new=n_new, beam=64, eos_id=eos, alpha=alpha)
        got = np.asarray(out[0]).tolist()
        got = got[:got.index(eos) + 1] if eos in got else got
        assert tuple(got) == best[1] and float(score[0]) == pytest.approx(best[0], abs=1e-4)


def test_beam_of_one_is_greedy(peaky_model):
    spec, params = peaky_model
    prompt = text_prompt(np.asarray([[1, 2, 3], [2, 2, 1]]))
    model = Transformer(spec, decode=True)
    greedy = decode(params, prompt, jax.random.key(0), model=model, n_new=5)
    beamed, _ = beam_search(params, prompt, model=model, n_new=5, beam=1, eos_id=7, alpha=0.0)
    np.testing.assert_array_equal(greedy, beamed)


def test_loglikelihood_equals_a_full_forward_pass(peaky_model):
    spec, params = peaky_model
    requests = [([1, 2, 3], [0, 1]), ([3], [2]), ([2, 2, 1, 1, 0, 3, 3, 1, 2, 0], [1, 1, 2])]  # the last is cut
    got = loglikelihood(params, spec, requests, batch_size=2)
    for (context, cont), (lp, _) in zip(requests, got):
        keep = (context + cont)[-(spec.max_seq_len + 1):]
        want = sequence_logprob(spec, params, keep[:len(keep) - len(cont)], cont)
        assert lp == pytest.approx(want, abs=1e-4)


def test_answer_budget_fits_whole_answers_in_every_tokenizer():
    """A byte- or character-level run spends a token per letter: its answers must still fit whole
    (SST-2 from a byte-level base was once cut to 'posi' and 'nega', accuracy 0)."""
    from gptjax.data.tokenizers import ByteTokenizer, CharTokenizer
    from gptjax.tasks.text_eval import answer_budget
    german = "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt, steht vor einem großen Gebäude am Fluss."
    answers = {"sentiment": task_files.SENTIMENT_LABELS, "qa": [" bathroom", " apple,football,milk"],
               "translate": [german * 3]}
    alphabet = sorted(set("".join(a for group in answers.values() for a in group)))
    for tokenizer in (ByteTokenizer(add_eos=True), CharTokenizer(alphabet)):
        for task, group in answers.items():
            for answer in group:
                assert len(tokenizer.encode(answer)) + 1 <= answer_budget(task, tokenizer), (tokenizer.name, task)


# ------------------------------------------------------------------ metrics

def test_bleu_is_sacrebleus_on_its_own_known_answer():
    refs = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
            ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    scores = translation_scores(hyps, refs)
    assert scores["bleu"] == 48.53 and scores["bleu_signature"].startswith("nrefs:2|case:mixed")
    assert translation_scores(["a b c d"], ["a b c d"])["bleu"] == 100.0


def test_babi_scores_count_errors_per_task():
    scores = babi_scores(["a", "b", "x", "d", "e", "f"], ["a", "b", "c", "d", "e", "g"], [1, 1, 1, 2, 2, 2])
    assert scores["per_task"] == {"1": pytest.approx(1 / 3), "2": pytest.approx(1 / 3)}
    assert scores["mean_error"] == pytest.approx(1 / 3) and scores["failed_tasks"] == 2


# ------------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def copy_run(copy_task, tmp_path_factory):
    run = tmp_path_factory.mktemp("copy_run") / "run"
    env = {k: v for k, v in os.environ.items() if k != "GPTJAX_DATA_DIR"}
    env.update(GPTJAX_CACHE_DIR=str(run.parent / "cache"))
    sets = ["data.task=jsonl", f"data.folder={copy_task}", "data.tokenizer=byte", "model.n_layer=2",
            "model.d_model=64", "model.n_head=4", "model.max_seq_len=64", "model.dropout=0",
            "train.label_smoothing=0", "train.steps=300", "train.batch_size=16", "train.eval_every=300",
            "train.checkpoint_every=100", "schedule.warmup_steps=20",
            "schedule.peak_lr=3e-3", "mesh.cpu_devices=1", "data.attention=prefix",
            "model.line_local_layers=1"]  # one-line prompts: the local layer sees each whole example
    proc = subprocess.run([sys.executable, "scripts/train.py", "experiments/translate_multi30k.py", "--workdir", str(run),
                           "--no_progress", *[f"--set={s}" for s in sets]],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, env


def evaluate(run, env, *args):
    return subprocess.run([sys.executable, "scripts/evaluate.py", "--workdir", str(run), *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_a_trained_task_model_is_scored_on_any_file_of_the_task(copy_run, copy_task):
    run, env = copy_run
    proc = evaluate(run, env, "--task", "jsonl", "--data", copy_task / "test.jsonl")
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(proc.stdout)
    assert scores["examples"] == 100 and scores["accuracy"] > 0.5  # reversing 2-4 words: learned
    assert scores["prompts_cut"] == 0
    assert json.loads((run / "config.json").read_text())["model"]["line_break_id"] == 10  # the byte "\n"
    saved = json.loads((run / "eval_jsonl.json").read_text())
    assert saved["accuracy"] == scores["accuracy"] and (run / "eval_jsonl.md").read_text().startswith("# jsonl")
    beamed = evaluate(run, env, "--task", "jsonl", "--data", copy_task / "test.jsonl", "--beam", 3)
    assert beamed.returncode == 0 and json.loads(beamed.stdout)["beam"] == 3
    held = evaluate(run, env, "--task", "jsonl", "--held_out", "--limit", 50)  # the run's own validation.jsonl
    assert held.returncode == 0, held.stderr[-3000:]
    first = json.loads((copy_task / "validation.jsonl").read_text().splitlines()[0])
    saved = json.loads((run / "eval_jsonl_held_out.json").read_text())
    assert saved["examples"] == 50 and saved["samples"][0]["reference"] == first["target"]
    assert json.loads((run / "eval_jsonl.json").read_text())["examples"] == 100  # the test file's result stays
    # a prompt longer than the window (64 tokens less 32 kept for the answer) is cut, and counted
    long = copy_task.parent / "long.jsonl"
    long.write_text("".join(json.dumps({"prompt": p, "target": "x"}) + "\n" for p in ("red =", "red " * 9 + "=")))
    cut = evaluate(run, env, "--task", "jsonl", "--data", long)
    assert cut.returncode == 0 and json.loads(cut.stdout)["prompts_cut"] == 1, cut.stderr[-3000:]


@pytest.mark.slow
def test_an_earlier_checkpoint_is_scored_into_files_of_its_own(copy_run, copy_task):
    run, env = copy_run
    newest = evaluate(run, env, "--task", "jsonl", "--data", copy_task / "test.jsonl")
    early = evaluate(run, env, "--task", "jsonl", "--data", copy_task / "test.jsonl", "--step", 100)
    assert newest.returncode == 0 and early.returncode == 0, early.stderr[-3000:]
    saved = json.loads((run / "eval_jsonl_step100.json").read_text())
    assert saved["step"] == 100 and saved["accuracy"] == json.loads(early.stdout)["accuracy"]
    assert saved["accuracy"] < json.loads(newest.stdout)["accuracy"]  # 100 steps of 300: not yet learned
    assert "step" not in json.loads((run / "eval_jsonl.json").read_text())  # the newest's file is the newest's


@pytest.mark.slow
def test_runs_are_scored_as_an_ensemble_and_a_run_with_another_tokenizer_is_refused(copy_run, copy_task, tmp_path):
    import shutil

    run, env = copy_run
    early = tmp_path / "early"  # a second member: the same run at step 200, its newest left
    shutil.copytree(run, early, ignore=shutil.ignore_patterns("300", "eval_*"))
    data = copy_task / "test.jsonl"
    proc = evaluate(run, env, "--task", "jsonl", "--data", data, "--ensemble", early, "--beam", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = json.loads(proc.stdout)
    assert scores["ensemble"] == [str(run), str(early)] and scores["examples"] == 100 and scores["accuracy"] > 0.5
    assert json.loads((run / "eval_jsonl_ensemble2.json").read_text())["accuracy"] == scores["accuracy"]
    before = sorted(p.name for p in run.iterdir())
    (early / "tokenizer" / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": list("abc")}))
    bad = evaluate(run, env, "--task", "jsonl", "--data", data, "--ensemble", early)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert f"{early}'s tokenizer differs from {run}'s" in bad.stderr, bad.stderr
    nothing = evaluate(run, env, "--task", "jsonl", "--data", data, "--ensemble", tmp_path / "nowhere")
    assert nothing.returncode == 2 and "not a run folder" in nothing.stderr, nothing.stderr[-2000:]
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "bad_line", "other_task", "no_such_step"])
def test_evaluate_refuses_bad_data_naming_file_and_line_and_writes_nothing(copy_run, tmp_path, case):
    run, env = copy_run
    before = sorted(p.name for p in run.iterdir())
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "red =", "target": "red"}\n{"prompt": "x"}\n')
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "red =", "target": "red"}\n')
    args = {"missing": ["--task", "jsonl", "--data", tmp_path / "nothing.jsonl"],
            "bad_line": ["--task", "jsonl", "--data", data],
            "other_task": ["--task", "translate", "--data", data],
            "no_such_step": ["--task", "jsonl", "--data", good, "--step", 150]}[case]
    proc = evaluate(run, env, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    words = {"missing": ["nothing.jsonl", "does not exist"], "bad_line": ["bad.jsonl:2"],
             "other_task": ["not trained on the translate task"],
             "no_such_step": ["no checkpoint of step 150", "steps 100, 200, 300"]}[case]
    assert all(w in proc.stderr for w in words), proc.stderr
    assert sorted(p.name for p in run.iterdir()) == before


def test_prompt_loss_under_prefix_attention_is_refused():
    exp = Experiment(model=ModelSpec(), data=TaskData(task="sentiment", attention="prefix", prompt_loss=0.5))
    with pytest.raises(ConfigError, match="data.prompt_loss=0.5 with data.attention=prefix"):
        exp.validate()
    dataclasses.replace(exp, data=TaskData(task="sentiment", attention="prefix")).validate()


def test_prompt_loss_weighs_the_prompt_in_training_rows_only(copy_task, tmp_path, monkeypatch):
    from gptjax.data.task_pipeline import TaskLMData

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    data = TaskLMData(TaskData(task="jsonl", folder=str(copy_task), tokenizer="byte", prompt_loss=0.25), 40, 0)
    train, evaluation = next(data.train_batches(2, 0)), next(data.eval_batches(2, 1))
    for batch, prompt_weight in ((train, 0.25), (evaluation, 0.0)):
        seg, mask = batch["segment_ids"][0], batch["loss_mask"][0]
        at = np.nonzero(seg == 1)[0]
        prompt_len = data.tokenizer.decode(batch["inputs"][0][at].tolist()).index("=") + 1
        # predictions of the prompt's own next tokens (within the example) get the weight; the target's get 1
        assert mask[at][:prompt_len - 1].tolist() == [prompt_weight] * (prompt_len - 1)
        assert set(mask[at][prompt_len - 1:].tolist()) <= {1.0, 0.0} and mask[at][prompt_len - 1] == 1.0
        assert mask[seg == 0].sum() == 0


def test_token_dropout_hides_prompt_inputs_only_and_the_same_on_resume(copy_task, tmp_path, monkeypatch):
    from gptjax.data.task_pipeline import TaskLMData

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    cfg = TaskData(task="jsonl", folder=str(copy_task), sp_vocab_size=300, prompt_loss=0.5)
    plain, data = TaskLMData(cfg, 40, 0), TaskLMData(dataclasses.replace(cfg, token_dropout=0.3), 40, 0)
    unk = data.tokenizer.unk_id
    assert unk not in plain.examples["train"]["tokens"]  # byte fallback: the unknown piece is free
    got, want = next(data.train_batches(16, 2)), next(plain.train_batches(16, 2))
    for k in want:  # only the inputs change: what is predicted, and how it is weighed, stay
        assert np.array_equal(got[k], want[k]) == (k != "inputs"), k
    changed = got["inputs"] != want["inputs"]
    assert (got["inputs"][changed] == unk).all()
    prompt = (want["segment_ids"] > 0) & (want["loss_mask"] == 0.5)  # predicts a prompt token: not its last
    assert not (changed & ~prompt).any()  # targets, each prompt's last token and padding are kept
    assert 0.2 < changed.sum() / prompt.sum() < 0.4
    assert np.array_equal(next(data.train_batches(16, 2))["inputs"], got["inputs"])  # resumed: the same drops
    assert not np.array_equal(next(data.train_batches(16, 3))["inputs"][changed], got["inputs"][changed])
    evaluation = next(data.eval_batches(4, 1))
    assert np.array_equal(evaluation["inputs"], next(plain.eval_batches(4, 1))["inputs"])  # never in evaluation


def test_token_dropout_without_an_unknown_piece_is_refused():
    exp = Experiment(model=ModelSpec(), data=TaskData(task="sentiment", tokenizer="byte", token_dropout=0.1))
    with pytest.raises(ConfigError, match="data.token_dropout=0.1 .* data.tokenizer='byte'"):
        exp.validate()
    dataclasses.replace(exp, data=TaskData(task="sentiment", token_dropout=0.1)).validate()


def test_unlabeled_rows_model_the_prompts_alone_and_never_read_a_target(copy_task, tmp_path, monkeypatch):
    from gptjax.data.task_pipeline import TaskLMData

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    data = TaskLMData(TaskData(task="jsonl", folder=str(copy_task), tokenizer="byte", unlabeled=True), 40, 0)
    labelled = TaskLMData(TaskData(task="jsonl", folder=str(copy_task), tokenizer="byte"), 40, 0)
    assert (data.examples["train"]["lengths"] < labelled.examples["train"]["lengths"]).all()  # own cache entry
    tok = data.tokenizer
    for batch in (next(data.train_batches(4, 0)), next(data.eval_batches(4, 1))):
        for r in range(4):
            seg, mask = batch["segment_ids"][r], batch["loss_mask"][r]
            for s in set(seg.tolist()) - {0}:
                at = np.nonzero(seg == s)[0]
                text = tok.decode(batch["inputs"][r][at].tolist())
                assert text.endswith("=") and text.count("=") == 1  # the prompt, and no target after it
                # every next token within the example is learned, <eos> last; none across examples
                assert mask[at][:-1].tolist() == [1.0] * (len(at) - 1)
                if at[-1] + 1 < len(seg):
                    assert mask[at[-1]] == 0.0
                learned = batch["targets"][r][at][mask[at] > 0].tolist()
                assert learned[-1] == tok.eos_id and tok.decode(learned[:-1]) == text[1:]
            assert mask[seg == 0].sum() == 0


def test_unlabeled_with_prompt_loss_is_refused():
    exp = Experiment(model=ModelSpec(), data=TaskData(task="sentiment", unlabeled=True, prompt_loss=0.5))
    with pytest.raises(ConfigError, match="data.unlabeled=true"):
        exp.validate()


def test_line_ages_outside_qa_are_refused():
    exp = Experiment(model=ModelSpec(), data=TaskData(task="sentiment", line_ages=True))
    with pytest.raises(ConfigError, match="data.line_ages"):
        exp.validate()
