"""Tokenizers: round trips, saved/loaded ids, char vocabulary of tiny Shakespeare."""
import pytest

from gptjax.data import tokenizers
from gptjax.data.tokenizers import (ByteTokenizer, CharTokenizer, SentencePieceTokenizer,
                                    load_tokenizer, train_sentencepiece)
from helpers.sonnets import SONNETS


def test_char_round_trip_and_sorted_vocab():
    tok = CharTokenizer.from_text("hello world\n")
    assert tok.chars == sorted(set("hello world\n"))
    assert tok.vocab_size == 9
    ids = tok.encode("low\nhold")
    assert ids == [tok.chars.index(c) for c in "low\nhold"]
    assert tok.decode(ids) == "low\nhold"
    assert tok.eos_id is None and tok.name == "char"


def test_char_unknown_character_names_it():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"'z'.*not in the char vocabulary"):
        tok.encode("abz")
    with pytest.raises(ValueError, match="outside"):
        tok.decode([0, 3])


def test_char_vocab_is_the_sorted_alphabet_of_a_corpus(text_corpus):
    """The generated corpus uses tiny Shakespeare's 65 characters: the same vocabulary, in code-point order."""
    from helpers.generated import CHARS

    text = text_corpus.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == 65 and "".join(tok.chars) == CHARS  # CHARS is written out in code-point order
    assert tok.encode("\n !$&") == [0, 1, 2, 3, 4]
    assert tok.decode(tok.encode(text)) == text


def test_char_vocab_of_tiny_shakespeare_is_65(data_dir):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    assert len(text) == 1_115_394
    tok = CharTokenizer.from_text(text)
    assert tok.vocab_size == 65
    assert tok.decode(tok.encode(text[:5000])) == text[:5000]


def test_byte_round_trip_unicode_and_eos():
    text = "Zürich — naïve ✓\n"
    tok = ByteTokenizer()
    assert tok.vocab_size == 256 and tok.eos_id is None
    assert tok.encode(text) == list(text.encode("utf-8"))
    assert tok.decode(tok.encode(text)) == text
    eos = ByteTokenizer(add_eos=True)
    assert (eos.vocab_size, eos.eos_id) == (257, 256)
    assert eos.decode(eos.encode("ab") + [256]) == "ab"  # EOS carries no text


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_trains_and_round_trips(tmp_path, model_type):
    corpus = tmp_path / "sonnets.txt"
    corpus.write_text(SONNETS, encoding="utf-8")
    tok = train_sentencepiece(str(corpus), tmp_path / "sp" / "m", vocab_size=420,
                              model_type=model_type)
    assert (tmp_path / "sp" / "m.model").is_file()
    assert 305 < tok.vocab_size <= 420
    assert tok.eos_id is not None
    ids = tok.encode(SONNETS)
    assert len(ids) < len(SONNETS) / 1.5  # it learned merges, not just characters
    assert tok.decode(ids) == SONNETS  # newlines survive
    odd = "  two spaces,\n\nZürich ✓ unseen\n"
    assert tok.decode(tok.encode(odd)) == odd  # byte fallback for unseen characters


def test_sentencepiece_from_strings_and_bad_type(tmp_path):
    tok = train_sentencepiece([SONNETS], tmp_path / "m", vocab_size=400)
    assert tok.decode(tok.encode("Shall I compare thee")) == "Shall I compare thee"
    with pytest.raises(ValueError, match="bpe' or 'unigram"):
        train_sentencepiece([SONNETS], tmp_path / "x", vocab_size=400, model_type="word2")
    with pytest.raises(ValueError, match="256 byte pieces"):
        train_sentencepiece([SONNETS], tmp_path / "y", vocab_size=100)


def test_save_load_all_kinds(tmp_path):
    sp = train_sentencepiece([SONNETS], tmp_path / "m", vocab_size=400)
    for i, tok in enumerate([CharTokenizer.from_text(SONNETS), ByteTokenizer(add_eos=True), sp]):
        d = tmp_path / f"run{i}" / "tokenizer"
        tok.save(d)
        back = load_tokenizer(d)
        assert type(back) is type(tok)
        assert (back.vocab_size, back.eos_id, back.name) == (tok.vocab_size, tok.eos_id, tok.name)
        assert back.encode(SONNETS) == tok.encode(SONNETS)
        assert back.fingerprint() == tok.fingerprint()
    # the run folder owns a copy of the SentencePiece model
    (tmp_path / "m.model").unlink()
    assert load_tokenizer(tmp_path / "run2" / "tokenizer").decode(sp.encode("fair")) == "fair"


def test_tokenizer_kinds_and_errors(tmp_path):
    assert CharTokenizer.from_text("ba").chars == ["a", "b"]
    assert ByteTokenizer(add_eos=True).vocab_size == 257
    sp = train_sentencepiece([SONNETS], tmp_path / "m", vocab_size=400)
    assert sp.vocab_size == SentencePieceTokenizer(tmp_path / "m.model").vocab_size
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SentencePieceTokenizer(tmp_path / "missing.model")
    with pytest.raises(FileNotFoundError, match="no saved tokenizer"):
        load_tokenizer(tmp_path / "empty")
    assert isinstance(CharTokenizer.from_text("x"), tokenizers.Tokenizer)
