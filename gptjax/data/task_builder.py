"""A TFDS builder for downstream tasks: prompt/target records as array_record, built once per input.

Splits `train` and `validation`, from the task's own files:

  translate  <folder>/train and <folder>/val (Multi30k's names), <lang>[.gz] sides
  sentiment  <folder>/train.tsv, with `val_fraction` of its phrases held out as validation, or of its
             sentences (data.held_out_by=sentence), every phrase inside them out of training
             (dev.tsv stays unseen: it is the benchmark `scripts/evaluate.py` scores)
  qa         every <folder>/qaN_*_train.txt; `val_fraction` of each task's stories held out
  jsonl      <folder>/train.jsonl and <folder>/validation.jsonl, or `val_fraction` of train

With `data.augment_copies`, the train split also holds that many renamed copies of each example
(gptjax/data/augment.py); with `data.both_ways`, a copy of each read right to left
(gptjax/data/both_ways.py). Records hold `prompt` and `target` (gptjax/data/task_formats.py wrote
them from the raw fields) and `group` (bAbI task number, sentiment label, or 0).
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from gptjax.config.tasks import DEFAULT_FOLDERS
from gptjax.data import task_files, task_formats
from gptjax.data.augment import permuted_copies
from gptjax.data.both_ways import with_reversed_copies
from gptjax.data.sentence_split import sentence_split, with_sentence_copies
from gptjax.data.tfds_local import LocalBuilder, build_local
from gptjax.errors import DataError


@dataclasses.dataclass(eq=False)
class TaskConfig(tfds.core.BuilderConfig):
    task: str = "translate"
    splits: dict = dataclasses.field(default_factory=dict)  # split -> list of (prompt, target, group)


class GptjaxTask(LocalBuilder):
    """Prompt/target records of one task and settings; see the module docstring."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "prompt/target/group records, train and validation."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.local_info("Downstream-task examples as prompt and target text (gptjax).", {
            "prompt": tfds.features.Text(), "target": tfds.features.Text(),
            "group": tfds.features.Scalar(dtype=np.int32)})

    def _split_generators(self, dl_manager):
        return {name: self._generate_examples(rows) for name, rows in self.builder_config.splits.items()}

    def _generate_examples(self, rows):
        for key, (prompt, target, group) in enumerate(rows):
            yield key, {"prompt": prompt, "target": target, "group": group}


def task_folder(cfg) -> pathlib.Path:
    """data.folder, else the task's folder under $GPTJAX_DATA_DIR."""
    if cfg.folder:
        folder = pathlib.Path(cfg.folder).expanduser()
    elif cfg.task in DEFAULT_FOLDERS and os.environ.get("GPTJAX_DATA_DIR"):
        folder = pathlib.Path(os.environ["GPTJAX_DATA_DIR"]) / DEFAULT_FOLDERS[cfg.task]
    else:
        raise DataError(f"data.folder is empty and GPTJAX_DATA_DIR is not set: point data.folder at the "
                        f"{cfg.task} task's files")
    if not folder.is_dir():
        raise DataError(f"data.folder={folder} does not exist; it should hold the {cfg.task} task's files")
    return folder


def held_out(keys, fraction: float, seed: int) -> np.ndarray:
    """A boolean mask over `keys`: which are held out (every example sharing a key goes the same way)."""
    unique = sorted(set(keys))
    order = np.random.default_rng(seed).permutation(len(unique))
    chosen = {unique[i] for i in order[:max(1, round(fraction * len(unique)))]}
    return np.asarray([k in chosen for k in keys])


def read_splits(cfg, folder: pathlib.Path) -> dict[str, list]:
    """{'train': [...], 'validation': [...]} of TaskExamples for the task's files in `folder`."""
    if cfg.task == "translate":
        return {name: task_files.read_parallel(folder / stem, cfg.source_lang, cfg.target_lang)
                for name, stem in (("train", "train"), ("validation", "val"))}
    if cfg.task == "sentiment":
        examples = task_files.read_glue_tsv(folder / "train.tsv")
        keys = [ex.source for ex in examples]
    elif cfg.task == "qa":
        files = sorted(folder.glob("qa*_train.txt"), key=task_files.babi_task_number)
        if not files:
            raise DataError(f"{folder} holds no bAbI training files (qaN_<name>_train.txt)")
        examples = [ex for f in files for ex in task_files.read_babi(f, cfg.context_lines, cfg.line_ages)]
        keys = [(ex.group, ex.story) for ex in examples]
    else:
        examples = task_files.read_jsonl(folder / "train.jsonl")
        if (folder / "validation.jsonl").is_file():
            return {"train": examples, "validation": task_files.read_jsonl(folder / "validation.jsonl")}
        keys = list(range(len(examples)))
    if cfg.task == "sentiment" and cfg.held_out_by == "sentence":
        train, validation = sentence_split(keys, cfg.val_fraction, cfg.split_seed)  # phrases inside: neither
    else:
        validation = held_out(keys, cfg.val_fraction, cfg.split_seed)
        train = ~validation
    splits = {"train": [ex for ex, k in zip(examples, train) if k],
              "validation": [ex for ex, k in zip(examples, validation) if k]}
    if cfg.task == "sentiment" and cfg.sentence_copies:
        splits["train"] = with_sentence_copies(splits["train"], [ex.source for ex in splits["train"]],
                                               cfg.sentence_copies)
    return splits


def prepare_task(cfg):
    """Build (or reuse) the task's array_record dataset; returns the TFDS builder."""
    folder = task_folder(cfg)
    examples = read_splits(cfg, folder)
    examples["train"] = permuted_copies(examples["train"], cfg.permute_classes(), cfg.augment_copies,
                                        cfg.augmented_groups(), seed=cfg.split_seed)
    if cfg.both_ways:
        examples["train"] = with_reversed_copies(examples["train"])
    supported = cfg.supported_groups()

    def record(ex):
        support = cfg.supporting_facts and (supported is None or ex.group in supported)
        return (*task_formats.format_example(cfg.task, ex, cfg.answer_space, support), ex.group)

    splits = {name: [record(ex) for ex in rows] for name, rows in examples.items()}
    h = hashlib.sha256(repr((cfg.task, cfg.source_lang, cfg.target_lang, cfg.val_fraction, cfg.split_seed,
                             cfg.context_lines)).encode())
    for name in sorted(splits):
        for row in splits[name]:
            h.update(repr(row).encode())
    config = TaskConfig(name=f"{cfg.task}_{h.hexdigest()[:12]}", task=cfg.task, splits=splits,
                        description=f"{cfg.task} from {folder}")
    return build_local(GptjaxTask, config, cfg.data_dir, lock=f"task_{config.name}")
