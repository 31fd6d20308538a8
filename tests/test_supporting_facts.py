"""bAbI's supporting lines as a written-out chain of thought (data.supporting_facts): read, renamed, written
before the answer, trained on, and stripped again when a run is scored."""
import numpy as np
import pytest

from gptjax.config import Experiment, ModelSpec, TaskData, Train
from gptjax.data import task_files
from gptjax.data.task_formats import answer_of, format_example
from gptjax.errors import ConfigError, DataError

# Question lines are numbered too: the ids 1 4 skip the question at 3.
STORY = ("1 Sandra got the football.\n2 Sandra went to the garden.\n3 Where is Sandra? \tgarden\t2\n"
         "4 Sandra went to the kitchen.\n5 Where is the football? \tkitchen\t1 4\n"
         "1 John went to the office.\n2 Where is John? \toffice\t1\n")


def read(tmp_path, text=STORY, name="qa2_two-supporting-facts_test.txt"):
    path = tmp_path / name
    path.write_text(text)
    return task_files.read_babi(path)


def test_each_question_keeps_its_supporting_lines_in_the_files_order(tmp_path):
    qs = read(tmp_path)
    assert [q.support for q in qs] == [("Sandra went to the garden.",),
                                       ("Sandra got the football.", "Sandra went to the kitchen."),
                                       ("John went to the office.",)]  # a new story: its own line 1
    assert read(tmp_path, "1 Mary moved.\n2 Where is Mary? \tkitchen\n")[0].support == ()  # ids are optional


@pytest.mark.parametrize("ids", ["9", "3", "1 x"], ids=["not_a_line", "a_question", "not_a_number"])
def test_supporting_ids_that_name_no_story_line_are_refused_with_file_and_line(tmp_path, ids):
    text = "1 Mary moved to the hall.\n2 John left.\n3 Where is John? \thall\t1\n4 Where is Mary? \thall\t" + ids + "\n"
    with pytest.raises(DataError, match=r"qa2_two-supporting-facts_test.txt:4: supporting ids"):
        read(tmp_path, text)


def test_the_target_writes_the_supporting_lines_then_the_answer_and_scoring_reads_it_back(tmp_path):
    q = read(tmp_path)[1]
    prompt, target = format_example("qa", q, answer_space=False, supporting_facts=True)
    assert prompt == q.source + "\n"
    assert target == "Sandra got the football.\nSandra went to the kitchen.\nkitchen"
    assert format_example("qa", q, supporting_facts=True)[1].endswith("\n kitchen")
    assert format_example("qa", q, answer_space=False)[1] == "kitchen"  # off: the answer alone
    assert answer_of(target, supporting_facts=True) == "kitchen"
    assert answer_of(target) == target


def test_renamed_copies_rename_the_supporting_lines_with_the_story(tmp_path):
    from gptjax.data.augment import permuted_copies

    q = read(tmp_path)[1]
    copies = permuted_copies([q], [("Sandra", "Mary", "John")], 6, None, seed=0)[1:]
    for c in copies:
        name = c.source.split()[0]
        assert all(line.startswith(name + " ") for line in c.support), c
    assert {c.source.split()[0] for c in copies} != {"Sandra"}


def test_supporting_facts_are_refused_outside_qa():
    exp = Experiment(model=ModelSpec(), data=TaskData(task="sentiment", supporting_facts=True), train=Train(steps=10))
    with pytest.raises(ConfigError, match="data.supporting_facts=true writes bAbI's supporting lines"):
        exp.validate()


def test_the_training_rows_learn_the_supporting_lines_and_the_answer(tmp_path, monkeypatch):
    from gptjax.data.task_pipeline import TaskLMData

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "babi"
    folder.mkdir()
    (folder / "qa2_two-supporting-facts_train.txt").write_text(STORY * 20)
    data = TaskLMData(TaskData(task="qa", folder=str(folder), tokenizer="byte", supporting_facts=True,
                               answer_space=False), 160, 0)
    batch = next(data.train_batches(4, 0))
    tok = data.tokenizer
    trained = [tok.decode(row[w > 0].tolist()) for row, w in zip(batch["targets"], batch["loss_mask"])]
    joined = "".join(trained)
    assert "Sandra got the football.\nSandra went to the kitchen.\nkitchen" in joined, trained
    assert "Where is" not in joined  # the question and story stay unlearned


def test_scoring_a_run_with_supporting_facts_reads_the_last_generated_line(monkeypatch):
    from gptjax.data.tokenizers import ByteTokenizer
    from gptjax.tasks import text_eval

    budgets = []

    def fake_generate(params, spec, tokenizer, prompts, n_new, *args, **kwargs):
        budgets.append(n_new)
        return ["Sandra got the football.\nSandra went to the kitchen.\nkitchen", "Sandra went to the garden.\noffice"]

    monkeypatch.setattr(text_eval, "generate_answers", fake_generate)
    examples = [task_files.TaskExample("Where is the football?", "kitchen", 2),
                task_files.TaskExample("Where is Sandra?", "garden", 2)]
    tokenizer = ByteTokenizer(add_eos=True)
    for supporting, error in ((True, 0.5), (False, 1.0)):
        exp = Experiment(model=ModelSpec(max_seq_len=512), data=TaskData(task="qa", supporting_facts=supporting))
        result = text_eval.score("qa", exp, None, tokenizer, examples, beam=1, alpha=0.6)
        assert result["per_task"] == {"2": pytest.approx(error)}
    longest = "Sandra went back to the bedroom.\n" * 3 + "bedroom"
    assert len(tokenizer.encode(longest)) + 1 <= budgets[0] and budgets[1] < budgets[0]
    assert np.isclose(result["mean_error"], 1.0)


def test_supporting_groups_write_the_lines_for_the_tasks_named_only(tmp_path, monkeypatch):
    from gptjax.data.task_pipeline import TaskLMData

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "babi"
    folder.mkdir()
    (folder / "qa2_two-supporting-facts_train.txt").write_text(STORY * 20)
    (folder / "qa1_single-supporting-fact_train.txt").write_text(STORY.replace("Sandra", "Daniel") * 20)
    data = TaskLMData(TaskData(task="qa", folder=str(folder), tokenizer="byte", supporting_facts=True,
                               supporting_groups="2", answer_space=False, val_fraction=0.0), 160, 0)
    trained = []
    for start in range(3):
        batch = next(data.train_batches(16, start))
        trained += [data.tokenizer.decode(row[w > 0].tolist()) for row, w in zip(batch["targets"], batch["loss_mask"])]
    joined = "".join(trained)
    assert "Sandra got the football.\nSandra went to the kitchen.\nkitchen" in joined  # task 2: the lines
    assert "Daniel got the football." not in joined and "kitchen" in joined.replace("Sandra", "")  # task 1: bare
    with pytest.raises(ConfigError, match="supporting_groups='2' picks the tasks"):
        Experiment(model=ModelSpec(), data=TaskData(task="qa", supporting_groups="2")).validate()
    with pytest.raises(ConfigError, match="supporting_groups='x'"):
        Experiment(model=ModelSpec(), data=TaskData(task="qa", supporting_facts=True,
                                                    supporting_groups="x")).validate()
