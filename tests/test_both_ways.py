"""data.both_ways: each sentiment training phrase also read right to left, and the label scored over both readings."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gptjax.config import Experiment, ModelSpec, TaskData
from gptjax.data.both_ways import REVERSED_MARK, reversed_words, with_reversed_copies
from gptjax.data.task_files import SENTIMENT_LABELS, TaskExample
from gptjax.data.tokenizers import ByteTokenizer
from gptjax.errors import ConfigError
from gptjax.model.transformer import Transformer
from gptjax.tasks.text_eval import both_readings, both_ways_accuracy, label_loglik

PHRASES = [("a gem of a film", 1), ("dull and  slow going", 0), ("good", 1), ("it drags on", 0)]


def test_a_reversed_copy_holds_the_same_words_backwards_and_the_same_label():
    assert reversed_words("dull and  slow going") == f"{REVERSED_MARK} going slow and dull"
    examples = [TaskExample(s, SENTIMENT_LABELS[y], y) for s, y in PHRASES]
    out = with_reversed_copies(examples)
    assert out[:4] == examples  # the forward readings stay first and unchanged
    for fwd, back in zip(examples, out[4:]):
        assert back.source.split()[1:] == fwd.source.split()[::-1] and back.source.split()[0] == REVERSED_MARK
        assert (back.target, back.group) == (fwd.target, fwd.group)


def test_both_ways_trains_on_reversed_copies_and_validates_forward_only(tmp_path, monkeypatch):
    from gptjax.data.task_pipeline import TaskLMData

    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))
    rows = [(f"{w} film number {i}", i % 2) for i, w in enumerate(["good", "bad", "fine", "dull"] * 10)]
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    plain = TaskLMData(TaskData(task="sentiment", folder=str(tmp_path), tokenizer="byte"), seq_len=32)
    both = TaskLMData(TaskData(task="sentiment", folder=str(tmp_path), tokenizer="byte", both_ways=True), seq_len=32)
    assert both.fingerprint != plain.fingerprint  # a dataset of its own, not the cached plain one
    assert both.texts("validation") == plain.texts("validation")
    train, forward = both.texts("train"), plain.texts("train")
    assert train[:len(forward)] == forward and len(train) == 2 * len(forward)
    for (p, t, g), (q, u, h) in zip(forward, train[len(forward):]):
        assert q == reversed_words(p.rstrip("\n")) + "\n" and (u, h) == (t, g)


def test_both_ways_outside_sentiment_or_with_prefix_attention_is_refused():
    with pytest.raises(ConfigError, match="data.both_ways"):
        Experiment(model=ModelSpec(), data=TaskData(task="qa", both_ways=True)).validate()
    with pytest.raises(ConfigError, match="data.attention=prefix"):
        Experiment(model=ModelSpec(), data=TaskData(task="sentiment", both_ways=True, attention="prefix")).validate()


def test_the_label_is_scored_on_the_mean_of_the_two_readings():
    tok = ByteTokenizer(add_eos=True)
    spec = ModelSpec(n_layer=1, n_head=2, d_model=16, vocab_size=tok.vocab_size, max_seq_len=64, attention="xla")
    params = flax.linen.meta.unbox(Transformer(spec).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"])
    examples = [TaskExample(s, SENTIMENT_LABELS[y], y) for s, y in PHRASES]
    readings = both_readings(params, spec, tok, "sentiment", examples)
    fwd = label_loglik(params, spec, tok, [ex.source + "\n" for ex in examples])
    back = label_loglik(params, spec, tok, [" ".join([REVERSED_MARK, *ex.source.split()[::-1]]) + "\n"
                                            for ex in examples])
    np.testing.assert_allclose(readings["forward"], fwd, rtol=1e-6)
    np.testing.assert_allclose(readings["reversed"], back, rtol=1e-6)
    assert not np.allclose(fwd, back)  # the two readings are scored on different prompts
    # scores made up so that each reading alone is wrong once and their mean is right every time
    refs = ["positive", "negative", "positive"]
    made = {"forward": np.asarray([[0.0, -1.0], [0.0, -5.0], [-9.0, 0.0]]),  # columns: negative, positive
            "reversed": np.asarray([[-5.0, 0.0], [-1.0, 0.0], [-9.0, 0.0]])}
    assert both_ways_accuracy(made, refs) == {"accuracy_loglik": 1.0, "accuracy_loglik_forward": pytest.approx(2 / 3),
                                              "accuracy_loglik_reversed": pytest.approx(2 / 3)}
