"""Word-class permutation (data.augment_copies, data.permute): renamed copies of training examples."""
import re

import pytest

from gptjax.config import Experiment, ModelSpec, TaskData
from gptjax.data import task_files
from gptjax.data.augment import permuted_copies
from gptjax.errors import ConfigError

STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Mary went back to the kitchen.
5 Where is Mary? \tkitchen\t4
"""
NAMES, PLACES = ["John", "Mary", "Sandra"], ["bathroom", "hallway", "kitchen", "office"]


@pytest.fixture
def questions(tmp_path):
    (tmp_path / "qa1_single-supporting-fact_train.txt").write_text(STORY)
    (tmp_path / "qa6_yes-no-questions_train.txt").write_text(STORY.replace("\tkitchen", "\tyes"))
    return task_files.read_babi(tmp_path)


def test_copies_rename_each_class_consistently_in_prompt_and_target(questions):
    out = permuted_copies(questions, [NAMES, PLACES], copies=3, seed=1)
    assert out[:len(questions)] == questions  # the originals first, unchanged
    copies = out[len(questions):]
    assert len(copies) == 3 * len(questions)
    renamed = 0
    for i, copy in enumerate(copies):
        original = questions[i % len(questions)]
        assert (copy.group, copy.story) == (original.group, original.story)
        # one word for one word, the same renaming everywhere in the example, and within its class
        a, b = re.findall(r"\w+", original.source + " " + original.target), re.findall(r"\w+", copy.source + " " + copy.target)
        assert len(a) == len(b)
        mapping = {}
        for x, y in zip(a, b):
            assert mapping.setdefault(x, y) == y
            for cls in (NAMES, PLACES):
                assert (x in cls) == (y in cls)
            if x not in NAMES + PLACES:
                assert x == y
        assert len(set(mapping.values())) == len(mapping)  # a permutation: two words never merge
        renamed += mapping != {x: x for x in mapping}
    assert renamed >= len(copies) - 1  # copies differ from their originals (chance of none: tiny)
    # the answer still follows from the story: the place of the question's person's last move
    for copy in copies:
        if copy.target != "yes":
            person = copy.source.splitlines()[-1].split()[-1].rstrip("?")
            last = [line for line in copy.source.splitlines()[:-1] if line.startswith(person)][-1]
            assert last.rstrip(".").split()[-1] == copy.target


def test_only_the_chosen_groups_are_copied_and_the_same_seed_gives_the_same_copies(questions):
    out = permuted_copies(questions, [NAMES, PLACES], copies=2, groups={1}, seed=0)
    assert [ex.group for ex in out[len(questions):]] == [1, 1, 1, 1]
    assert out == permuted_copies(questions, [NAMES, PLACES], copies=2, groups={1}, seed=0)
    assert permuted_copies(questions, [NAMES, PLACES], copies=0) == questions


def test_validation_is_never_copied(tmp_path, monkeypatch):
    from gptjax.data.task_pipeline import TaskLMData

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "babi"
    folder.mkdir()
    (folder / "qa1_single-supporting-fact_train.txt").write_text(STORY * 10)
    cfg = TaskData(task="qa", folder=str(folder), tokenizer="byte", val_fraction=0.2)
    plain = TaskLMData(cfg, 64, 0)
    grown = TaskLMData(TaskData(**{**cfg.__dict__, "augment_copies": 2, "permute": "John Mary Sandra"}), 64, 0)
    assert grown.texts("validation") == plain.texts("validation")
    assert len(grown.texts("train")) == 3 * len(plain.texts("train"))
    assert grown.texts("train")[:len(plain.texts("train"))] == plain.texts("train")
    assert {t for _, t, _ in grown.texts("train")} == {" bathroom", " kitchen"}  # places were not in a class


@pytest.mark.parametrize("fields, words", [
    ({"augment_copies": 2}, "needs data.permute"),
    ({"permute": "Mary"}, "class 1 ('Mary') needs two different words"),
    ({"permute": "Mary John; kitchen Mary"}, "'Mary' is in classes 1 and 2"),
    ({"permute": "Mary Jo-hn"}, "'Jo-hn' is not a word"),
    ({"permute": "Mary John", "augment_groups": "1-x"}, "expected group numbers and ranges"),
    ({"permute": "Mary John", "augment_groups": "5-2"}, "expected group numbers and ranges"),
])
def test_bad_permutation_settings_are_refused(fields, words):
    exp = Experiment(model=ModelSpec(), data=TaskData(task="qa", **fields))
    with pytest.raises(ConfigError, match=re.escape(words)):
        exp.validate()


def test_group_ranges_and_lists_are_read():
    assert TaskData(augment_groups="1-3, 7,9-10").augmented_groups() == {1, 2, 3, 7, 9, 10}
    assert TaskData().augmented_groups() is None
    assert TaskData(permute=" a b ;; c d c ").permute_classes() == [["a", "b"], ["c", "d"]]
