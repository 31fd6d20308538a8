"""Shared prompts (data.share_prompts): a story's questions laid once as a tree, each answer learned as alone."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import Experiment, ModelSpec, TaskData
from gptjax.data import shared_prompts
from gptjax.errors import ConfigError
from gptjax.model.transformer import Transformer

# a story asking three questions as it goes, then one asking one: a chain of three, then one alone
STORY = ("1 Mary moved to the bathroom.\n2 John went to the hallway.\n3 Where is Mary? \tbathroom\t1\n"
         "4 Daniel went back to the hallway.\n5 Where is Daniel? \thallway\t4\n"
         "6 Mary went to the garden.\n7 Where is Mary? \tgarden\t6\n")
SHORT = "1 {} got the football.\n2 {} went to the garden.\n3 Where is the football? \tgarden\t1 2\n"
NAMES = "Sandra John Mary Daniel Bill Fred Jeff Julie Lily".split()


@pytest.fixture
def babi(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "babi"
    folder.mkdir()
    (folder / "qa1_single-supporting-fact_train.txt").write_text(STORY * 9)
    # stories of their own: two stories that read alike would chain, and rightly (the tokens are the same)
    (folder / "qa2_two-supporting-facts_train.txt").write_text("".join(SHORT.format(n, n) for n in NAMES))
    return folder


def task_data(folder, seq_len=255, **kw):
    from gptjax.data.task_pipeline import TaskLMData

    cfg = TaskData(task="qa", folder=str(folder), tokenizer="byte", val_fraction=0.1, **kw)
    return TaskLMData(cfg, seq_len, 0)


def test_a_storys_questions_chain_and_a_new_story_or_task_starts_anew(babi):
    data = task_data(babi, share_prompts=True)
    ex = data.examples["train"]
    # 8 training stories of qa1 (3 questions each) and 8 of qa2 (1 each), in file order
    assert [len(u) for u in data.units] == [3] * 8 + [1] * 8
    first = data.units[0]
    def text(i):  # example i's stem
        return data.tokenizer.decode(ex["tokens"][ex["starts"][i]:ex["starts"][i] + data.stems[i]].tolist())
    assert text(first[0]) == "Mary moved to the bathroom.\nJohn went to the hallway.\n"
    assert text(first[2]).endswith("Daniel went back to the hallway.\nMary went to the garden.\n")
    # each chain's length: its first example whole, then what each next one adds past the stem before it
    n, stem = ex["lengths"], data.stems
    assert data.unit_lengths[0] == n[first[0]] + n[first[1]] - stem[first[0]] + n[first[2]] - stem[first[1]]
    assert data.unit_lengths.sum() < n.sum()
    # a window of 3 story lines slides: the third question's prompt no longer starts with the second's stem
    windowed = task_data(babi, share_prompts=True, context_lines=3)
    assert [len(u) for u in windowed.units[:2]] == [2, 1]
    # a row too short for a whole chain cuts it where it would overflow
    tight = task_data(babi, seq_len=150, share_prompts=True)
    assert all(length <= 151 for length in tight.unit_lengths) and len(tight.units) > len(data.units)


def test_every_training_example_is_laid_once_an_epoch(babi):
    data = task_data(babi, share_prompts=True)
    stream = data._full
    stream.row(0)
    order, bounds = stream.epochs[0]
    laid = [e for r in range(len(bounds) - 1) for e in stream.row(r)]
    assert sorted(laid) == list(range(len(data.examples["train"]["lengths"])))


def model_logprobs(spec, params, batch):
    """Log-probability of each target token where the loss mask is on, in row order."""
    b = {k: jnp.asarray(v)[None] for k, v in batch.items()}
    logits = Transformer(spec).apply({"params": params}, b, method="from_batch")
    lp = jax.nn.log_softmax(logits, axis=-1)[0]
    picked = jnp.take_along_axis(lp, b["targets"][0][:, None], axis=-1)[:, 0]
    return np.asarray(picked)[batch["loss_mask"] > 0]


@pytest.mark.parametrize("flavour,attention", [("llama", "flash"), ("llama", "xla"), ("gpt2", "flash")])
def test_a_shared_row_predicts_each_answer_exactly_as_its_example_alone(babi, flavour, attention):
    shared = task_data(babi, 383, share_prompts=True, prompt_loss=0.5)
    alone = task_data(babi, 383, prompt_loss=0.5)
    nl = shared.tokenizer.encode("\n")[0]
    spec = ModelSpec(flavour=flavour, n_layer=2, n_head=2, d_model=32, vocab_size=shared.vocab_size,
                     max_seq_len=384, attention=attention, line_local_layers=1, line_break_id=nl, dropout=0.0)
    params = nn.meta.unbox(Transformer(spec).init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32)))["params"]
    chain = shared.units[0].tolist() + shared.units[8].tolist()  # a chain of three, then a story alone
    row = shared.row("train", chain, prompt_loss=0.5)
    assert row["segment_ids"].max() == 2 and (row["segment_ids"] > 0).sum() < sum(
        (alone.row("train", [i])["segment_ids"] > 0).sum() for i in chain)
    # every answer token (and <eos>) is learned once, with the log-probability it has alone
    target_of = lambda r: r["loss_mask"] == 1.0  # noqa: E731
    got = model_logprobs(spec, params, {**row, "loss_mask": target_of(row).astype(np.float32)})
    want = np.concatenate([model_logprobs(spec, params, {**r, "loss_mask": target_of(r).astype(np.float32)})
                           for r in (alone.row("train", [i]) for i in chain)])
    np.testing.assert_allclose(got, want, atol=2e-5)
    # a prompt token is learned only where it sees what it would alone: never from behind an answer
    branches, mask = row["branches"], row["loss_mask"]
    after_answer = (branches[:-1] > 0) & (branches[1:] != branches[:-1])
    assert not mask[:-1][after_answer].any()
    assert (mask == 0.5).sum() > 0


def test_rows_without_sharing_are_unchanged_and_carry_no_branches(babi):
    data = task_data(babi)
    assert all(len(u) == 1 for u in data.units) and data.stems is None
    assert "branches" not in next(data.train_batches(2, 0))
    shared = next(task_data(babi, share_prompts=True).eval_batches(2, 1))
    assert shared["branches"].max() == 0  # validation rows are laid alone, as before


def test_share_prompts_with_prefix_attention_or_unlabeled_data_is_refused():
    for bad in ({"attention": "prefix"}, {"unlabeled": True}):
        exp = Experiment(model=ModelSpec(), data=TaskData(task="qa", share_prompts=True, **bad))
        with pytest.raises(ConfigError, match="data.share_prompts"):
            exp.validate()


def test_branches_hide_each_ending_from_later_tokens():
    from gptjax.model.masks import attention_mask

    idx = jnp.arange(6)[None]
    ones = jnp.ones((1, 6), jnp.int32)
    branches = jnp.asarray([[0, 0, 1, 1, 0, 2]])  # stem, ending 1, more stem, ending 2
    m = np.asarray(attention_mask(idx, idx, ones, ones, None, branches, branches))[0, 0]
    assert m[3].tolist() == [True, True, True, True, False, False]  # ending 1 sees the stem and itself
    assert m[4].tolist() == [True, True, False, False, True, False]  # the stem after it does not see it
    assert m[5].tolist() == [True, True, False, False, True, True]  # nor does ending 2


def test_chains_need_the_same_group_and_the_whole_stem():
    ex = {"tokens": np.asarray([1, 9, 2, 9, 1, 9, 3, 9, 1, 9, 3, 9], np.int32), "starts": np.asarray([0, 4, 8]),
          "prompt_lens": np.asarray([4, 4, 4]), "lengths": np.asarray([4, 4, 4]), "groups": np.asarray([1, 1, 2])}
    stem = shared_prompts.stems(ex, 9)
    assert stem.tolist() == [2, 2, 2]  # each prompt's first line
    assert shared_prompts.chains_onto(ex, stem, 0, 1) and not shared_prompts.chains_onto(ex, stem, 1, 2)


def test_a_run_with_shared_prompts_trains_and_scores_end_to_end(babi, tmp_path):
    import json
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "GPTJAX_DATA_DIR"}
    run = tmp_path / "run"
    sets = [f"data.folder={babi}", "data.tokenizer=byte", "data.share_prompts=true", "model.n_layer=2",
            "model.d_model=32", "model.n_head=2", "model.max_seq_len=256", "model.line_local_layers=1",
            "train.steps=40", "train.batch_size=2", "train.eval_every=20", "train.eval_batches=1",
            "train.checkpoint_every=20", "data.first_steps=10", "mesh.cpu_devices=2"]
    proc = subprocess.run([sys.executable, "scripts/train.py", "experiments/qa_babi.py", "--workdir", str(run),
                           "--no_progress", *[f"--set={s}" for s in sets]],
                          cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "share_prompts lays 32 training examples as 16 chains" in proc.stderr
    evals = [m["eval_loss"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if "eval_loss" in m]
    assert len(evals) == 2 and evals[1] < evals[0]
    scored = subprocess.run([sys.executable, "scripts/evaluate.py", "--workdir", str(run), "--task", "qa",
                             "--held_out"], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert json.loads(scored.stdout)["examples"] == 4
