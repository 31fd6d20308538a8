"""Tokenizers between Hugging Face folders and gptjax workdirs.

Read, in order of preference: GPT-2 BPE files (vocab.json + merges.txt), a
SentencePiece tokenizer.model (LLaMA), a byte-level BPE tokenizer.json (what
transformers 5 saves for GPT-2; turned into vocab.json + merges.txt), or a
gptjax_tokenizer/ folder (our own kinds, which have no Hugging Face form).
"""
from __future__ import annotations

import json
import pathlib
import shutil
import tempfile

from gptjax.data import tokenizers
from gptjax.errors import ConversionError

OWN_FOLDER = "gptjax_tokenizer"  # char/byte tokenizers ride along here on export


def load_hf_tokenizer(hf_dir: pathlib.Path):
    """Our tokenizer object for the tokenizer files in `hf_dir`; refuses when none is usable."""
    if (hf_dir / "vocab.json").is_file() and (hf_dir / "merges.txt").is_file():
        return _gpt2_bpe(hf_dir / "vocab.json", hf_dir / "merges.txt")
    if (hf_dir / tokenizers.SP_MODEL_FILE).is_file():
        try:
            return tokenizers.SentencePieceTokenizer(hf_dir / tokenizers.SP_MODEL_FILE)
        except RuntimeError as e:
            raise ConversionError(f"{hf_dir / tokenizers.SP_MODEL_FILE} is not a SentencePiece model: {e}") from None
    if (hf_dir / "tokenizer.json").is_file():
        return _from_tokenizer_json(hf_dir / "tokenizer.json")
    if (hf_dir / OWN_FOLDER / tokenizers.TOKENIZER_FILE).is_file():
        return tokenizers.load_tokenizer(hf_dir / OWN_FOLDER)
    raise ConversionError(f"{hf_dir} holds no tokenizer this converter reads: expected vocab.json + merges.txt "
                          "(GPT-2 BPE), tokenizer.model (SentencePiece) or a byte-level BPE tokenizer.json")


def _gpt2_bpe(vocab, merges):
    try:
        return tokenizers.GPT2BPETokenizer(vocab, merges)
    except ImportError as e:
        raise ConversionError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - the tokenizers library's parse errors
        raise ConversionError(f"cannot read GPT-2 BPE files {vocab.name} / {merges.name}: {e}") from None


def _from_tokenizer_json(path: pathlib.Path):
    """A GPT-2 style byte-level BPE tokenizer.json as vocab.json + merges.txt; anything else refused."""
    try:
        tj = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConversionError(f"{path} is not JSON: {e}") from None
    model, pre = tj.get("model") or {}, tj.get("pre_tokenizer") or {}
    problems = []
    if model.get("type") != "BPE":
        problems.append(f"model type {model.get('type')!r} (need BPE)")
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix") or model.get("byte_fallback"):
        problems.append("subword prefix/suffix or byte fallback")
    if tj.get("normalizer") is not None:
        problems.append("a normalizer")
    if pre.get("type") != "ByteLevel" or pre.get("add_prefix_space") or not pre.get("use_regex", True):
        problems.append(f"pre_tokenizer {pre.get('type')!r} (need GPT-2's ByteLevel, no prefix space)")
    vocab = model.get("vocab") or {}
    for tok in tj.get("added_tokens") or []:
        if vocab.get(tok["content"]) != tok["id"]:
            problems.append(f"added token {tok['content']!r} outside the BPE vocabulary")
    if problems:
        raise ConversionError(f"{path} is not a GPT-2 style byte-level BPE tokenizer ({'; '.join(problems)}); "
                              "supported: vocab.json + merges.txt, tokenizer.model, or such a tokenizer.json")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    with tempfile.TemporaryDirectory() as tmp:  # the tokenizer keeps the file bytes, not the paths
        tmp = pathlib.Path(tmp)
        (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        (tmp / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
        return _gpt2_bpe(tmp / "vocab.json", tmp / "merges.txt")


def save_hf_tokenizer(tokenizer, out_dir: pathlib.Path, max_len: int) -> str:
    """Write the tokenizer in Hugging Face form into `out_dir`; returns a one-line note of what was written."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(tmp)
        files = [p for p in pathlib.Path(tmp).iterdir() if p.name != tokenizers.TOKENIZER_FILE]
        if tokenizer.name == "gpt2_bpe":
            for p in files:
                shutil.copyfile(p, out_dir / p.name)
            special = tokenizers.GPT2BPETokenizer.EOS if tokenizer.eos_id is not None else None
            (out_dir / "tokenizer_config.json").write_text(json.dumps(
                {"tokenizer_class": "GPT2Tokenizer", "bos_token": special, "eos_token": special,
                 "unk_token": special, "add_prefix_space": False, "model_max_length": max_len}, indent=2) + "\n")
            return "tokenizer: GPT-2 BPE (vocab.json, merges.txt)"
        if tokenizer.name == "sentencepiece":
            shutil.copyfile(pathlib.Path(tmp) / tokenizers.SP_MODEL_FILE, out_dir / tokenizers.SP_MODEL_FILE)
            return "tokenizer: SentencePiece (tokenizer.model)"
    tokenizer.save(out_dir / OWN_FOLDER)
    return (f"tokenizer: {tokenizer.name!r} has no Hugging Face form; saved for gptjax in {OWN_FOLDER}/ "
            "(transformers will not load it)")
