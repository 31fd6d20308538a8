"""BPE-dropout copies (data.bpe_dropout, data.bpe_copies): the training split gains sampled
segmentations of its own examples, the same text in other pieces; validation never changes."""
import dataclasses
import json

import numpy as np
import pytest

from gptjax.config import Experiment, ModelSpec, TaskData
from gptjax.errors import ConfigError


@pytest.fixture(scope="module")
def word_task(tmp_path_factory):
    """A JSONL task of long made-up words, so that a 300-piece BPE model merges them in many steps."""
    root = tmp_path_factory.mktemp("word_task")
    rng = np.random.default_rng(0)
    syllables = "ka ro mi tu sen dal ver op lin gar".split()
    words = ["".join(rng.choice(syllables, 3)) for _ in range(40)]
    for name, n in (("train", 400), ("validation", 40)):
        with open(root / f"{name}.jsonl", "w") as f:
            for _ in range(n):
                seq = list(rng.choice(words, 3))
                f.write(json.dumps({"prompt": " ".join(seq) + " =", "target": " ".join(seq[::-1])}) + "\n")
    return root


def examples_text(data, split, i):
    ex = data.examples[split]
    ids = ex["tokens"][ex["starts"][i]:ex["starts"][i] + ex["lengths"][i]].tolist()
    p = int(ex["prompt_lens"][i])
    return data.tokenizer.decode(ids[:p]), data.tokenizer.decode(ids[p:]), ids


def test_copies_are_the_same_texts_in_other_pieces_and_the_same_for_a_seed(word_task, tmp_path, monkeypatch):
    from gptjax.data.task_pipeline import TaskLMData

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    cfg = TaskData(task="jsonl", folder=str(word_task), sp_vocab_size=300)
    plain = TaskLMData(cfg, 64, 0)
    sampled_cfg = dataclasses.replace(cfg, bpe_dropout=0.2, bpe_copies=2)
    data = TaskLMData(sampled_cfg, 64, 0)
    n = len(plain.examples["train"]["lengths"])
    assert len(data.examples["train"]["lengths"]) == 3 * n
    assert np.array_equal(data.examples["train"]["groups"][:n], data.examples["train"]["groups"][n:2 * n])
    differ = 0
    for i in range(0, n, 7):
        prompt, target, ids = examples_text(plain, "train", i)
        first, second = examples_text(data, "train", i), examples_text(data, "train", n + i)
        assert first[2] == ids  # the originals come first, unchanged
        for copy in (second, examples_text(data, "train", 2 * n + i)):
            assert copy[:2] == (prompt, target)  # the same text ...
            assert copy[2][-1] == data.tokenizer.eos_id
            differ += copy[2] != ids  # ... mostly in other pieces, longer ones split
    assert differ > 0.8 * 2 * len(range(0, n, 7))
    longer = data.examples["train"]["lengths"][n:].sum() / (2 * plain.examples["train"]["lengths"].sum())
    assert 1.05 < longer < 2.0
    for k in ("tokens", "lengths", "prompt_lens"):  # validation never sampled
        assert np.array_equal(data.examples["validation"][k], plain.examples["validation"][k])
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache2"))  # encoded again, not read back
    again, other = TaskLMData(sampled_cfg, 64, 0), TaskLMData(sampled_cfg, 64, 1)
    assert np.array_equal(again.examples["train"]["tokens"], data.examples["train"]["tokens"])
    assert not np.array_equal(other.examples["train"]["lengths"][n:], data.examples["train"]["lengths"][n:])
    rows = next(data.train_batches(8, 0))["segment_ids"]
    assert rows.shape == (8, 64) and rows.max() >= 1


@pytest.mark.parametrize("fields, match", [
    ({"bpe_dropout": 0.1}, "data.bpe_dropout=0.1 and data.bpe_copies=0 come together"),
    ({"bpe_copies": 2}, "data.bpe_dropout=0.0 and data.bpe_copies=2 come together"),
    ({"bpe_dropout": 0.1, "bpe_copies": 2, "tokenizer": "byte"}, "data.bpe_copies=2 .* data.tokenizer='byte'"),
])
def test_bpe_dropout_settings_that_cannot_work_are_refused(fields, match):
    with pytest.raises(ConfigError, match=match):
        Experiment(model=ModelSpec(), data=TaskData(task="jsonl", **fields)).validate()
    Experiment(model=ModelSpec(), data=TaskData(task="jsonl", bpe_dropout=0.1, bpe_copies=2)).validate()
