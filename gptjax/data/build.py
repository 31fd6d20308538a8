"""`build_data(exp)`: the data object a run reads, from the experiment's data section.

Dispatches on the section's `kind`; every data object has `train_batches`,
`eval_batches`, `tokenizer` and `vocab_size` (gptjax/data/batching.py). With
`tokenizer_dir` (a run's tokenizer/ folder) the tokenizer saved there is used,
so a resumed run or an evaluation encodes exactly as training did.
"""
from __future__ import annotations

import os
import pathlib

from gptjax.data import tokenizers
from gptjax.errors import ConfigError, DataError


def build_data(exp, tokenizer_dir=None):
    """The data object for `exp.data` (see the module docstring)."""
    builders = {"text": _text, "task": _task, "digits": _digits, "spoken_digits": _spoken, "mixture": _mixture}
    kind = getattr(exp.data, "kind", None)
    if kind not in builders:
        raise ConfigError(f"data section of kind {kind!r}: expected one of {', '.join(builders)}")
    return builders[kind](exp, exp.data, tokenizer_dir)


def _text(exp, cfg, tokenizer_dir):
    from gptjax.data.text_pipeline import TextLMData

    if cfg.pretrained_tokenizer:
        if cfg.dataset == "text" and not cfg.files:
            raise ConfigError("data.files is empty: name the fine-tuning text, e.g. "
                              "--set data.files='my_corpus/*.txt' (a file, folder or glob of UTF-8 text)")
        source = tokenizer_dir
        if source is None and exp.train.init_from:
            source = pathlib.Path(exp.train.init_from) / "tokenizer"
        if source is None or not (pathlib.Path(source) / tokenizers.TOKENIZER_FILE).is_file():
            raise ConfigError(f"data: no {cfg.tokenizer} tokenizer to load: set train.init_from to the imported "
                              f"workdir (it holds tokenizer/), or train in that workdir itself")
        tokenizer_dir = source
    return TextLMData(dataset=cfg.dataset, tokenizer=cfg.tokenizer, seq_len=exp.model.max_seq_len,
                      seed=exp.train.seed, files=cfg.files, data_dir=cfg.data_dir, sp_model=cfg.sp_model,
                      sp_vocab_size=cfg.sp_vocab_size, text_key=cfg.text_key, pack=cfg.pack,
                      tokenizer_dir=tokenizer_dir)


def _task(exp, cfg, tokenizer_dir):
    from gptjax.data.task_pipeline import TaskLMData

    return TaskLMData(cfg, exp.model.max_seq_len, exp.train.seed, tokenizer_dir=tokenizer_dir)


def spoken_digits_folder(cfg) -> str:
    """The recordings folder: data.folder, else $GPTJAX_DATA_DIR/fsdd/recordings."""
    if cfg.folder or cfg.source != "folder":
        return cfg.folder
    root = os.environ.get("GPTJAX_DATA_DIR", "")
    if not root:
        raise DataError("data.folder is empty and GPTJAX_DATA_DIR is not set: point data.folder at the FSDD "
                        "recordings/ folder (WAV files named {digit}_{speaker}_{index}.wav)")
    return os.path.join(root, "fsdd", "recordings")


def _digits_source(cfg, tokenizer, task: str):
    from gptjax.data.digits import DigitsSource

    return DigitsSource(task, tokenizer, test_fraction=cfg.test_fraction, split_seed=cfg.split_seed,
                        augment=cfg.augment, data_dir=cfg.data_dir)


def _spoken_source(cfg, exp, tokenizer):
    from gptjax.data.spoken_digits import SpokenDigitsSource

    return SpokenDigitsSource(tokenizer, exp.media.audio, folder=spoken_digits_folder(cfg), source=cfg.source,
                              data_dir=cfg.data_dir, split_by=cfg.split_by, test_speakers=cfg.test_speakers,
                              test_below_index=cfg.test_below_index, augment=cfg.augment,
                              speed_perturb=cfg.speed_perturb, shift=cfg.shift, noise=cfg.noise,
                              time_masks=cfg.time_masks, freq_masks=cfg.freq_masks)


def _media(exp, tokenizer_dir, makers: dict, weights):
    from gptjax.data.mixture import MediaLMData, load_or_make_tokenizer

    tokenizer = load_or_make_tokenizer(tokenizer_dir, exp.media.pixel_levels)
    sources = {name: make(tokenizer) for name, make in makers.items()}
    return MediaLMData(sources, weights, exp, tokenizer)


def _digits(exp, cfg, tokenizer_dir):
    return _media(exp, tokenizer_dir, {cfg.task: lambda tok: _digits_source(cfg, tok, cfg.task)}, (1.0,))


def _spoken(exp, cfg, tokenizer_dir):
    return _media(exp, tokenizer_dir, {"transcribe": lambda tok: _spoken_source(cfg, exp, tok)}, (1.0,))


def _mixture(exp, cfg, tokenizer_dir):
    from gptjax.data.mixture import TextWindowsSource

    def maker(name):
        if name in ("caption", "vqa", "generate"):
            return lambda tok: _digits_source(cfg.digits, tok, name)
        if name == "transcribe":
            return lambda tok: _spoken_source(cfg.spoken, exp, tok)
        return lambda tok: TextWindowsSource(tok, cfg.text_dataset, cfg.text_files, cfg.text_len)

    parsed = cfg.parsed()
    return _media(exp, tokenizer_dir, {name: maker(name) for name, _ in parsed}, tuple(w for _, w in parsed))
