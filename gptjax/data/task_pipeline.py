"""Downstream-task batches: prompt/target records -> token ids -> packed rows -> grain batches.

Each example is `prompt ids + target ids + <eos>`; the loss is on the target and
<eos> only (training rows add the prompt's own loss weighted by data.prompt_loss,
0 by default; evaluation rows never do, so eval losses compare). With data.unlabeled an example is its
prompt alone + <eos>, all of it trained (language modelling of the task's inputs). Examples are packed
into rows of `seq_len + 1` tokens: each keeps its own segment id and positions from 0, so attention
never crosses examples.
A prompt too long for a row loses its oldest tokens (a bAbI story its first lines).
With data.token_dropout (word dropout), training rows' prompt inputs are hidden at random behind the
SentencePiece model's unknown piece, drawn from (seed, row), while their targets stay the true tokens.
With data.bpe_copies, the training split also holds that many copies of each example segmented
anew by BPE-dropout (gptjax/data/bpe_dropout.py).

Training row `r` (of an endless stream) comes from epoch e's packing: the
examples shuffled by (seed, e), then laid into rows in that order. Batch `s`
is rows s*B .. s*B+B-1, so a resumed run at step s sees what an uninterrupted
one would have. Evaluation rows pack the validation split in its own order.
With a curriculum (data.first_groups, data.first_steps), the first first_steps*B
rows come from a stream of their own over those groups' examples (each stage of
'1; 1-3' the next first_steps*B rows from its own), and the full stream starts
after them at its own row 0.
With data.share_prompts, training rows lay each chain of examples whose prompts grow one from the
other (a bAbI story's questions) once, as a tree (gptjax/data/shared_prompts.py): the streams shuffle
and pack chains rather than examples, and rows carry `branches`. Validation rows are laid as before.

Packing is written here rather than taken from grain: grain's packers work on
iterators whose state a run would have to checkpoint, while here the data
position is the step alone.
"""
from __future__ import annotations

import bisect
import hashlib
import logging
import pathlib

import grain
import numpy as np

from gptjax import atomic
from gptjax.data import bpe_dropout, corpora, shared_prompts, tokenizers
from gptjax.data.batching import BatchSource
from gptjax.data.task_builder import prepare_task
from gptjax.errors import DataError

log = logging.getLogger(__name__)


class TaskLMData(BatchSource):
    """Packed prompt -> target sequences of one task (see the module docstring)."""

    def __init__(self, cfg, seq_len: int, seed: int = 0, tokenizer_dir=None):
        self.cfg, self.seq_len, self.seed = cfg, seq_len, seed
        builder = prepare_task(cfg)
        self.fingerprint = builder.builder_config.name
        self.records = {split: source for split, source in builder.as_data_source().items()}
        self.tokenizer = self._tokenizer(tokenizer_dir)
        self.vocab_size = self.tokenizer.vocab_size
        if self.tokenizer.eos_id is None:
            raise DataError("the task's tokenizer has no end-of-sequence token")
        self.examples = {split: self._encode(split) for split in self.records}
        for split, ex in self.examples.items():
            self.warn_if_cut(split, ex["lengths"])
        self.units, self.unit_lengths = self._units()
        self._full = _RowStream(self, np.arange(len(self.units)), (seed,))
        self._stages = []  # the curriculum's streams, one per stage of data.first_groups
        for k, groups in enumerate(cfg.first_stages()):
            first_of = np.asarray([u[0] for u in self.units], np.int64)
            pool = np.flatnonzero(np.isin(self.examples["train"]["groups"][first_of], sorted(groups)))
            if not len(pool):
                held = sorted(set(self.examples["train"]["groups"].tolist()))
                raise DataError(f"data.first_groups={cfg.first_groups!r}: no training example is in groups "
                                f"{sorted(groups)} (the training split holds groups {held})")
            self._stages.append(_RowStream(self, pool, (seed, 1, k)))  # (seed, 1, k): no full-stream epoch's key

    # ---- tokens -----------------------------------------------------------------

    def texts(self, split: str) -> list[tuple[str, str, int]]:
        """(prompt, target, group) of every example of the split, in order."""
        source = self.records[split]
        rows = source.__getitems__(range(len(source)))
        text = lambda x: x.decode("utf-8") if isinstance(x, bytes) else str(x)  # noqa: E731
        return [(text(r["prompt"]), text(r["target"]), int(r["group"])) for r in rows]

    def _tokenizer(self, tokenizer_dir):
        if tokenizer_dir and (pathlib.Path(tokenizer_dir) / tokenizers.TOKENIZER_FILE).is_file():
            return tokenizers.load_tokenizer(tokenizer_dir)
        if self.cfg.tokenizer == "byte":
            return tokenizers.ByteTokenizer(add_eos=True)
        prefix = corpora.cache_dir() / "sentencepiece" / f"{self.fingerprint}_bpe{self.cfg.sp_vocab_size}"
        if pathlib.Path(f"{prefix}.model").is_file():
            return tokenizers.SentencePieceTokenizer(f"{prefix}.model")
        log.info("tokenizer: training a SentencePiece model of %d pieces on the %s training split",
                 self.cfg.sp_vocab_size, self.cfg.task)
        texts = [t for prompt, target, _ in self.texts("train") for t in (prompt, target)]
        return tokenizers.train_sentencepiece(texts, prefix, self.cfg.sp_vocab_size)

    def _encode(self, split: str) -> dict:
        """{"tokens": all examples' ids end to end, "starts", "prompt_lens", "lengths", "groups"}."""
        variant = "|unlabeled" if self.cfg.unlabeled else ""
        if split == "train" and self.cfg.bpe_copies:
            variant += f"|bpe{self.cfg.bpe_dropout}x{self.cfg.bpe_copies}s{self.seed}"
        key = hashlib.sha256(f"{self.fingerprint}|{split}|{self.tokenizer.fingerprint()}{variant}".encode())
        key = key.hexdigest()[:20]
        path = corpora.cache_dir() / "tokens" / f"task_{key}.npz"
        if path.is_file():
            with np.load(path) as z:
                return dict(z)
        texts = self.texts(split)
        if self.cfg.unlabeled:  # the prompt is the whole example; the label is never encoded
            texts = [(p, "", g) for p, _, g in texts]
        encoded = [(self.tokenizer.encode(p), self.tokenizer.encode(t), g) for p, t, g in texts]
        if split == "train" and self.cfg.bpe_copies:
            encoded += bpe_dropout.sampled_copies(self.tokenizer, texts, self.cfg.bpe_copies, self.cfg.bpe_dropout,
                                                  self.seed)
        pieces, prompt_lens, groups = [], [], []
        for p, t, group in encoded:
            if self.cfg.unlabeled:
                p, t = [], p + [self.tokenizer.eos_id]
            else:
                t = t + [self.tokenizer.eos_id]
            pieces.append(np.asarray(p + t, np.int32))
            prompt_lens.append(len(p))
            groups.append(group)
        lengths = np.asarray([len(x) for x in pieces], np.int64)
        out = {"tokens": np.concatenate(pieces), "starts": np.concatenate([[0], np.cumsum(lengths)[:-1]]),
               "prompt_lens": np.asarray(prompt_lens, np.int64), "lengths": lengths,
               "groups": np.asarray(groups, np.int32)}
        with atomic.replacing(path, suffix=".npz") as tmp:
            np.savez(tmp, **out)
        return out

    def warn_if_cut(self, split: str, lengths: np.ndarray) -> int:
        """Say how many examples of `split` lose their oldest prompt tokens to the row length (a bAbI
        question may lose the line it asks about); returns that count."""
        cut = int((lengths > self.seq_len + 1).sum())
        if cut:
            log.warning("data: %d of %d %s examples (%.0f%%) are longer than a row of %d tokens and lose their "
                        "oldest prompt tokens (longest: %d); raise model.max_seq_len, or for bAbI lower "
                        "data.context_lines or raise data.sp_vocab_size", cut, len(lengths), split,
                        100 * cut / len(lengths), self.seq_len + 1, int(lengths.max()))
        return cut

    # ---- packing ----------------------------------------------------------------

    def _units(self) -> tuple[list[np.ndarray], np.ndarray]:
        """What the training streams shuffle and pack: chains of examples sharing their prompts (data.share_prompts),
        else each example alone; and their lengths in a row."""
        ex, room = self.examples["train"], self.seq_len + 1
        self.stems = None
        if self.cfg.share_prompts:
            newline = self.tokenizer.encode("\n")
            if len(newline) != 1:
                raise DataError("data.share_prompts=true needs a tokenizer that writes a newline as one token")
            self.stems = shared_prompts.stems(ex, newline[0])
            units, lengths = shared_prompts.chain_units(ex, self.stems, room)
            log.info("data: share_prompts lays %d training examples as %d chains, %.2fx fewer tokens",
                     len(ex["lengths"]), len(units), np.minimum(ex["lengths"], room).sum() / lengths.sum())
            return units, lengths
        return [np.asarray([i]) for i in range(len(ex["lengths"]))], np.minimum(ex["lengths"], room)

    def _fitted_lengths(self, split: str) -> np.ndarray:
        """Row lengths of what `_pack` packs: the training split's units, the validation split's examples."""
        return self.unit_lengths if split == "train" else np.minimum(self.examples[split]["lengths"], self.seq_len + 1)

    def _pack(self, split: str, order: np.ndarray) -> np.ndarray:
        """Start offsets (into `order`) of the rows that lay the examples of `order` in turn."""
        lengths = self._fitted_lengths(split)[order]
        starts, used = [0], 0
        for i, n in enumerate(lengths):
            if used + n > self.seq_len + 1 and used:
                starts.append(i)
                used = 0
            used += n
        return np.asarray(starts + [len(order)], np.int64)

    def _train_row(self, r: int, global_batch: int) -> list[int]:
        """Example indices of global training row r (batches of `global_batch` rows)."""
        stage_rows = self.cfg.first_steps * global_batch
        if r < stage_rows * len(self._stages):
            return self._stages[r // stage_rows].row(r % stage_rows)
        return self._full.row(r - stage_rows * len(self._stages))

    def row(self, split: str, examples: list[int], prompt_loss: float = 0.0,
            drop_key: int | None = None) -> dict[str, np.ndarray]:
        """One packed row of `examples`: inputs, targets, loss_mask, segment_ids, positions (length L), and
        with prefix attention `prefix` (the prompts' tokens). With `drop_key` (a training row's index) and
        data.token_dropout, prompt input tokens but each prompt's last become the unknown piece, drawn from
        (seed, drop_key), so a resumed run drops the same ones."""
        ex, L = self.examples[split], self.seq_len
        row = {"inputs": np.zeros(L + 1, np.int32), "is_target": np.zeros(L + 1, bool),
               "segment_ids": np.zeros(L + 1, np.int32), "positions": np.zeros(L + 1, np.int32),
               "branches": np.zeros(L + 1, np.int32)}
        share = self.stems is not None and split == "train"
        at, seg, prev = 0, 0, None
        for branch, i in enumerate(examples, 1):
            tokens = ex["tokens"][ex["starts"][i]:ex["starts"][i] + ex["lengths"][i]]
            cut = max(0, len(tokens) - (L + 1))  # the oldest prompt tokens go
            cut = min(cut, max(ex["prompt_lens"][i] - 1, 0))
            skip = 0  # with shared prompts: the tokens already laid by the example before (its stem)
            if share and prev is not None and not cut and shared_prompts.chains_onto(ex, self.stems, prev, i):
                skip = self.stems[prev]
            else:
                seg += 1
            prev = None if cut else i
            tokens, prompt_len = tokens[cut:cut + L + 1], ex["prompt_lens"][i] - cut
            n = len(tokens) - skip
            row["inputs"][at:at + n] = tokens[skip:]
            row["is_target"][at + prompt_len - skip:at + n] = True
            row["segment_ids"][at:at + n], row["positions"][at:at + n] = seg, skip + np.arange(n)
            if share:  # the stem on branch 0, seen by the examples chained on; the rest on its own branch
                ending = 0 if cut else self.stems[i] - skip
                row["branches"][at + ending:at + n] = branch
            at += n
        same_example = (row["segment_ids"][1:] == row["segment_ids"][:-1]) & (row["segment_ids"][1:] > 0)
        # a token predicts the next only if it sees what the next sees: the same branch, or from branch 0
        same_example &= (row["branches"][1:] == row["branches"][:-1]) | (row["branches"][:-1] == 0)
        weights = np.where(row["is_target"][1:], 1.0, prompt_loss) * same_example
        inputs = row["inputs"][:-1]
        if drop_key is not None and self.cfg.token_dropout:  # word dropout; the targets stay the true tokens
            prompt = (row["segment_ids"][:-1] > 0) & ~row["is_target"][:-1] & ~row["is_target"][1:]
            drop = prompt & (np.random.default_rng((self.seed, 2, drop_key)).random(L) < self.cfg.token_dropout)
            inputs = np.where(drop, self.tokenizer.unk_id, inputs).astype(np.int32)
        out = {"inputs": inputs, "targets": row["inputs"][1:], "loss_mask": weights.astype(np.float32),
               "segment_ids": row["segment_ids"][:-1], "positions": row["positions"][:-1]}
        if self.cfg.attention == "prefix":  # each example's prompt is its own bidirectional prefix
            out["prefix"] = (row["segment_ids"] > 0)[:-1] & ~row["is_target"][:-1]
        if self.stems is not None:  # every split's rows, so that train and eval batches have one structure
            out["branches"] = row["branches"][:-1]
        return out

    def _batch(self, split: str, rows: list[list[int]], row_ids=None) -> dict[str, np.ndarray]:
        """`row_ids`: the training rows' global indices, which key their word dropout (data.token_dropout)."""
        parts = [self.row(split, r, self.cfg.prompt_loss if split == "train" else 0.0,
                          drop_key=None if row_ids is None else row_ids[i]) for i, r in enumerate(rows)]
        return {k: np.stack([p[k] for p in parts]) for k in parts[0]}

    # ---- batches ------------------------------------------------------------------

    def train_batches(self, global_batch: int, start_step: int = 0, process_index: int = 0, process_count: int = 1):
        """Endless local training batches from `start_step` (process p gets rows p*B/P..)."""
        local = self.local_batch(global_batch, process_index, process_count)
        first = process_index * local  # this process's rows within each global batch
        steps = grain.MapDataset.range(start_step, 2 ** 62)
        ids = lambda s: [s * global_batch + first + j for j in range(local)]  # noqa: E731
        return self.read(steps.map(lambda s: self._batch(
            "train", [self._train_row(r, global_batch) for r in ids(s)], ids(s))))

    def eval_batches(self, global_batch: int, num_batches: int | None = None, process_index: int = 0,
                     process_count: int = 1):
        """The first `num_batches` batches of packed validation rows; the same every call."""
        local = self.local_batch(global_batch, process_index, process_count)
        bounds = self._pack("validation", np.arange(len(self.examples["validation"]["lengths"])))
        rows = [list(range(bounds[i], bounds[i + 1])) for i in range(len(bounds) - 1)]
        num_batches = self.eval_count(global_batch, num_batches, len(rows) // global_batch,
                                      f"the validation split packs into {len(rows)} rows of {self.seq_len} tokens")
        ds = grain.MapDataset.range(num_batches).map(
            lambda b: self._batch("validation", rows[b * global_batch + process_index * local:][:local]))
        return self.read(ds)

    def __repr__(self) -> str:
        return (f"TaskLMData({self.cfg.task}, vocab={self.vocab_size}, seq_len={self.seq_len}, "
                f"train={len(self.examples['train']['lengths'])} examples)")


class _RowStream:
    """Endless packed training rows over the units (examples, or chains of them) in `pool`: epoch e
    shuffles them by (*key, e); a row is the example indices of its units, in order."""

    def __init__(self, data: TaskLMData, pool: np.ndarray, key: tuple):
        self.data, self.pool, self.key = data, pool, key
        self.epochs: list[tuple] = []  # (order, row offsets) of each epoch laid out so far
        self.starts = [0]  # the first row of each epoch

    def row(self, r: int) -> list[int]:
        while self.starts[-1] <= r:  # lay out epochs as far as needed (each once)
            order = self.pool[np.random.default_rng([*self.key, len(self.epochs)]).permutation(len(self.pool))]
            self.epochs.append((order, self.data._pack("train", order)))
            self.starts.append(self.starts[-1] + len(self.epochs[-1][1]) - 1)
        e = bisect.bisect_right(self.starts, r) - 1
        order, rows = self.epochs[e]
        i = r - self.starts[e]
        return [e for u in order[rows[i]:rows[i + 1]] for e in self.data.units[u].tolist()]
