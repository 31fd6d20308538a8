"""A curriculum (data.first_groups, data.first_steps, in one stage or several) and bare bAbI answers (data.answer_space=false)."""
import re

import numpy as np
import pytest

from gptjax.config import Experiment, ModelSpec, TaskData, Train
from gptjax.data import task_files
from gptjax.errors import ConfigError, DataError

LOOKUP = "1 Mary moved to the bathroom.\n2 John went to the hallway.\n3 Where is Mary? \tbathroom\t1\n"
OBJECTS = "1 Sandra got the football.\n2 Sandra went to the garden.\n3 Where is the football? \tgarden\t1 2\n"
CHAIN = ("1 Daniel took the apple.\n2 Daniel went to the office.\n3 Daniel went to the kitchen.\n"
         "4 Where was the apple before the kitchen? \toffice\t1 2 3\n")


@pytest.fixture
def two_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "babi"
    folder.mkdir()
    (folder / "qa1_single-supporting-fact_train.txt").write_text(LOOKUP * 40)
    (folder / "qa2_two-supporting-facts_train.txt").write_text(OBJECTS * 40)
    return folder


def row_texts(data, batch) -> list[str]:
    return [data.tokenizer.decode(row[row > 0].tolist()) for row in batch["inputs"]]


def test_the_first_steps_read_only_the_first_groups_then_every_group(two_tasks):
    from gptjax.data.task_pipeline import TaskLMData

    plain_cfg = TaskData(task="qa", folder=str(two_tasks), tokenizer="byte", val_fraction=0.1)
    cfg = TaskData(**{**plain_cfg.__dict__, "first_groups": "1", "first_steps": 5})
    data, plain = TaskLMData(cfg, 96, 0), TaskLMData(plain_cfg, 96, 0)
    batches = data.train_batches(4, 0)
    first = [next(batches) for _ in range(5)]
    for batch in first:  # 5 steps x 4 rows: more than one epoch of qa1's 36 training stories
        texts = row_texts(data, batch)
        assert all("Mary" in t and "football" not in t for t in texts), texts
    after = [next(batches) for _ in range(3)]
    plain_batches = plain.train_batches(4, 0)
    for batch in after:  # step 5 on is the plain stream from its own step 0
        expected = next(plain_batches)
        assert all(np.array_equal(batch[k], expected[k]) for k in expected)
    assert any("football" in t for b in after for t in row_texts(data, b))
    resumed = data.train_batches(4, 3)  # a resumed run sees what the uninterrupted one saw
    for batch in first[3:] + after:
        got = next(resumed)
        assert all(np.array_equal(got[k], batch[k]) for k in batch)


def test_stages_take_first_steps_each_in_turn_then_every_group(two_tasks):
    from gptjax.data.task_pipeline import TaskLMData

    (two_tasks / "qa3_three-supporting-facts_train.txt").write_text(CHAIN * 40)
    plain_cfg = TaskData(task="qa", folder=str(two_tasks), tokenizer="byte", val_fraction=0.1)
    one = TaskLMData(TaskData(**{**plain_cfg.__dict__, "first_groups": "1", "first_steps": 4}), 96, 0)
    data = TaskLMData(TaskData(**{**plain_cfg.__dict__, "first_groups": "1; 1-2", "first_steps": 4}), 96, 0)
    plain = TaskLMData(plain_cfg, 96, 0)
    batches, one_batches = data.train_batches(4, 0), one.train_batches(4, 0)
    stage1 = [next(batches) for _ in range(4)]
    for batch in stage1:  # the first stage is the one-stage curriculum's, row for row
        assert all(np.array_equal(batch[k], v) for k, v in next(one_batches).items())
    stage2 = [row_texts(data, next(batches)) for _ in range(4)]
    texts = [t for rows in stage2 for t in rows]
    assert any("football" in t for t in texts) and any("Mary" in t for t in texts)
    assert not any("apple" in t for t in texts), texts  # task 3 waits for the full stream
    plain_batches = plain.train_batches(4, 0)
    after = [next(batches) for _ in range(3)]
    for batch in after:  # step 8 on is the plain stream from its own step 0
        assert all(np.array_equal(batch[k], v) for k, v in next(plain_batches).items())
    resumed = data.train_batches(4, 6)  # resumed in the second stage: the same rows
    assert row_texts(data, next(resumed)) == stage2[2]


@pytest.mark.parametrize("groups, words", [
    ("3-5", "data.first_groups='3-5': no training example is in groups [3, 4, 5]"),
    ("1; 7", "data.first_groups='1; 7': no training example is in groups [7]"),
])
def test_first_groups_that_hold_no_training_example_are_refused(two_tasks, groups, words):
    from gptjax.data.task_pipeline import TaskLMData

    cfg = TaskData(task="qa", folder=str(two_tasks), tokenizer="byte", first_groups=groups, first_steps=5)
    with pytest.raises(DataError, match=re.escape(words + " (the training split holds groups [1, 2])")):
        TaskLMData(cfg, 96, 0)


@pytest.mark.parametrize("fields, words", [
    ({"first_groups": "1"}, "data.first_groups='1' and data.first_steps=0 come together"),
    ({"first_steps": 100}, "data.first_groups='' and data.first_steps=100 come together"),
    ({"first_groups": "1", "first_steps": 1000}, "data.first_steps=1000 must be below train.steps=1000"),
    ({"first_groups": "one", "first_steps": 10}, "data.first_groups='one': expected group numbers and ranges"),
    ({"first_groups": "1; 1-3", "first_steps": 500}, "data.first_steps=500 (2 stages x 500 steps) must be below "
                                                      "train.steps=1000"),
    ({"first_groups": "1;; 2", "first_steps": 10}, "data.first_groups='1;; 2' has an empty stage"),
    ({"task": "sentiment", "answer_space": False}, "data.answer_space=false writes bAbI answers bare"),
])
def test_bad_curriculum_and_answer_settings_are_refused(fields, words):
    exp = Experiment(model=ModelSpec(), data=TaskData(**{"task": "qa", **fields}), train=Train(steps=1000))
    with pytest.raises(ConfigError, match=re.escape(words)):
        exp.validate()


def test_bare_answers_follow_the_newline_without_a_space(tmp_path):
    from gptjax.data.task_formats import format_example

    path = tmp_path / "qa1_single-supporting-fact_test.txt"
    path.write_text(LOOKUP)
    ex = task_files.read_babi(path)[0]
    assert format_example("qa", ex, answer_space=False) == (ex.source + "\n", "bathroom")
    assert format_example("qa", ex) == (ex.source + "\n", " bathroom")
