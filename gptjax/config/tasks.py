"""Downstream tasks as data: which benchmark's files, which languages, how examples are tokenized.

A task turns each example into a prompt and a target (gptjax/data/task_formats.py);
a run trains a decoder on prompt + target with the loss on the target only.
"""
from __future__ import annotations

import dataclasses
import re

from gptjax.config.fields import NON_NEGATIVE, POSITIVE, between, field, one_of
from gptjax.config.registry import config_kind
from gptjax.errors import ConfigError

TASKS = ("translate", "sentiment", "qa", "jsonl")
# where each task's files are under $GPTJAX_DATA_DIR when data.folder is empty
DEFAULT_FOLDERS = {"translate": "multi30k", "sentiment": "sst2", "qa": "babi/en"}


@config_kind
@dataclasses.dataclass(frozen=True)
class TaskData:
    """Examples of one downstream task: Multi30k translation, SST-2 sentiment, bAbI question answering,
    or any JSONL file of {"prompt", "target"} objects (train.jsonl, optional validation.jsonl)."""

    task: str = field("translate", one_of(*TASKS))
    folder: str = ""  # the task's files; empty: $GPTJAX_DATA_DIR/<multi30k | sst2 | babi/en>
    source_lang: str = "en"  # translate: file suffixes of the source and target sides
    target_lang: str = "de"
    tokenizer: str = field("sentencepiece", one_of("sentencepiece", "byte"))
    sp_vocab_size: int = field(8000, POSITIVE)  # trained on the training split's prompts and targets
    val_fraction: float = field(0.1, between(0, 1, low_open=True, high_open=True))  # qa / jsonl: held out
    split_seed: int = field(0, NON_NEGATIVE)  # which examples (bAbI: which stories) are held out
    # sentiment: hold out single phrases, or whole sentences (phrases no other contains) with every phrase
    # inside them leaving training, so validation is like GLUE's dev (gptjax/data/sentence_split.py)
    held_out_by: str = field("phrase", one_of("phrase", "sentence"))
    # sentiment: each training phrase also read right to left (its words reversed behind a marker), and scoring
    # averages the label log-likelihoods of both readings, as a BiLSTM joins its directions (gptjax/data/both_ways.py)
    both_ways: bool = False
    # sentiment: the training split's whole sentences (phrases no other phrase contains) gain this many copies,
    # so training leans towards what GLUE's dev holds, without losing the phrases (gptjax/data/sentence_split.py)
    sentence_copies: int = field(0, NON_NEGATIVE)
    context_lines: int = field(0, NON_NEGATIVE)  # qa: keep the last N story lines (0: all that fit)
    line_ages: bool = False  # qa: each story line opens with how many lines before the question it was told
    # causal: every token sees the ones before it; prefix: the prompt's tokens see the whole prompt
    # (bidirectional, as an encoder would), the target's see the prompt and the target so far
    attention: str = field("causal", one_of("causal", "prefix"))
    # weight of the prompt's own next-token loss next to the target's (1): 0 learns the target only; a
    # little language modelling of the prompt can help a model that starts from nothing
    prompt_loss: float = field(0.0, between(0, 1))
    # true: each example is its prompt alone + <eos>, every token trained, no label read: language modelling
    # of the task's own inputs (ULMFiT's domain step), a base that fine-tunes fully or with LoRA
    unlabeled: bool = False
    # word dropout (Iyyer et al. 2015; Bowman et al. 2016): each prompt token of a training row is replaced by
    # the SentencePiece model's unknown piece with this chance, the prompt's last token and every target kept;
    # the targets a prompt's tokens predict stay the true ones (gptjax/data/task_pipeline.py)
    token_dropout: float = field(0.0, between(0, 1, high_open=True))
    # BPE-dropout (Provilkov et al. 2020): the training split gains `bpe_copies` copies of each example, prompt
    # and target segmented anew with each merge skipped with chance `bpe_dropout` (gptjax/data/bpe_dropout.py)
    bpe_dropout: float = field(0.0, between(0, 1, high_open=True))
    bpe_copies: int = field(0, NON_NEGATIVE)
    # training examples gain this many copies with the words of each `permute` class renamed at random,
    # consistently across prompt and target (gptjax/data/augment.py); validation examples never change
    augment_copies: int = field(0, NON_NEGATIVE)
    permute: str = ""  # classes of interchangeable words: 'Mary John Sandra; kitchen garden office'
    augment_groups: str = ""  # which groups (bAbI task numbers) are copied: '1-19', '1,3,5'; empty: all
    # qa: the answer written as the stories write their words, " bedroom" (true), or bare after the prompt's
    # newline, "bedroom" (false; SentencePiece then splits it into pieces the stories never hold)
    answer_space: bool = True
    # qa: the target is the story lines the answer rests on (the files' supporting ids), one per line, then
    # the answer: strong supervision, as Weston et al.'s Memory Networks trained with; scoring reads the
    # answer from the generated text's last line (gptjax/data/task_formats.py)
    supporting_facts: bool = False
    supporting_groups: str = ""  # which groups (bAbI task numbers) write them: '2,5,15'; empty: all
    # a curriculum: the first `first_steps` steps train on the groups in `first_groups` only ('1' or '1-3'),
    # the steps after on every group; stages separated by ';' ('1; 1-3') take `first_steps` steps each, in
    # turn (gptjax/data/task_pipeline.py)
    first_groups: str = ""
    first_steps: int = field(0, NON_NEGATIVE)
    # training rows lay each chain of examples whose prompts grow one from the other (a bAbI story's questions)
    # once, each ending hidden from the others, so every target sees what it would alone (gptjax/data/shared_prompts.py)
    share_prompts: bool = False
    data_dir: str = ""  # TFDS data dir; empty: the gptjax cache
    kind: str = "task"

    def validate(self, exp) -> None:
        if self.task == "translate" and self.source_lang == self.target_lang:
            raise ConfigError(f"data.source_lang and data.target_lang are both {self.source_lang!r}: "
                              "translate between two languages (e.g. en and de)")
        if self.prompt_loss and self.attention == "prefix":
            raise ConfigError(f"data.prompt_loss={self.prompt_loss} with data.attention=prefix: there every prompt "
                              "token sees the whole prompt, so its next token is copied, not predicted; use "
                              "data.attention=causal or data.prompt_loss=0")
        if self.unlabeled and (self.prompt_loss or self.attention == "prefix"):
            raise ConfigError("data.unlabeled=true trains on the prompts alone, every token of them: drop "
                              "data.prompt_loss and data.attention=prefix (they weigh a prompt against its target)")
        if self.line_ages and self.task != "qa":
            raise ConfigError(f"data.line_ages numbers bAbI story lines; data.task={self.task!r} has none: "
                              "use it with data.task=qa, or drop it")
        if self.held_out_by == "sentence" and self.task != "sentiment":
            raise ConfigError(f"data.held_out_by=sentence holds out the sentences of a phrase treebank (SST-2); "
                              f"data.task={self.task!r} has none: use it with data.task=sentiment, or drop it")
        if self.sentence_copies and self.task != "sentiment":
            raise ConfigError(f"data.sentence_copies={self.sentence_copies} copies the whole sentences of a phrase "
                              f"treebank (SST-2); data.task={self.task!r} has none: use it with data.task=sentiment, "
                              "or drop it")
        if self.both_ways and self.task != "sentiment":
            raise ConfigError(f"data.both_ways=true reads a sentiment phrase in both word orders and scores the label "
                              f"words over both; data.task={self.task!r} is scored otherwise: use it with "
                              "data.task=sentiment, or drop it")
        if self.both_ways and self.attention == "prefix":
            raise ConfigError("data.both_ways=true adds a right-to-left reading to causal attention; "
                              "data.attention=prefix already reads each prompt both ways: drop one of them")
        if self.token_dropout and self.tokenizer != "sentencepiece":
            raise ConfigError(f"data.token_dropout={self.token_dropout} replaces prompt tokens with the SentencePiece "
                              f"model's unknown piece; data.tokenizer={self.tokenizer!r} has none: use "
                              "data.tokenizer=sentencepiece, or drop it")
        if bool(self.bpe_dropout) != bool(self.bpe_copies):
            raise ConfigError(f"data.bpe_dropout={self.bpe_dropout} and data.bpe_copies={self.bpe_copies} come "
                              "together: how often a merge is skipped, and how many sampled copies of each training "
                              "example to add (e.g. data.bpe_dropout=0.1 data.bpe_copies=4)")
        if self.bpe_copies and self.tokenizer != "sentencepiece":
            raise ConfigError(f"data.bpe_copies={self.bpe_copies} samples SentencePiece segmentations; "
                              f"data.tokenizer={self.tokenizer!r} has one way to encode a text: use "
                              "data.tokenizer=sentencepiece, or drop data.bpe_dropout and data.bpe_copies")
        if self.augment_copies and not self.permute.strip():
            raise ConfigError(f"data.augment_copies={self.augment_copies} needs data.permute: the classes of words "
                              "to rename, e.g. 'Mary John Sandra; kitchen garden office'")
        if not self.answer_space and self.task != "qa":
            raise ConfigError(f"data.answer_space=false writes bAbI answers bare; data.task={self.task!r} has "
                              "none: use it with data.task=qa, or drop it")
        if self.supporting_facts and self.task != "qa":
            raise ConfigError(f"data.supporting_facts=true writes bAbI's supporting lines before the answer; "
                              f"data.task={self.task!r} has none: use it with data.task=qa, or drop it")
        if self.supported_groups() is not None and not self.supporting_facts:
            raise ConfigError(f"data.supporting_groups={self.supporting_groups!r} picks the tasks whose targets carry "
                              "supporting lines: it needs data.supporting_facts=true, or drop it")
        if self.share_prompts and (self.attention == "prefix" or self.unlabeled):
            raise ConfigError("data.share_prompts=true lays a shared prompt once, read causally, with each example's "
                              "ending after it: it works with data.attention=causal and labelled examples only; "
                              "drop data.attention=prefix and data.unlabeled, or data.share_prompts")
        if self.share_prompts and exp.model.line_memory:
            raise ConfigError("data.share_prompts=true and model.line_memory=true both set which keys each token "
                              "sees (as branches of the attention mask) and cannot be combined: drop one of them")
        if bool(self.first_groups.strip()) != bool(self.first_steps):
            raise ConfigError(f"data.first_groups={self.first_groups!r} and data.first_steps={self.first_steps} "
                              "come together: the groups the first steps train on, and how many steps that is "
                              "(e.g. data.first_groups=1 data.first_steps=500)")
        stages = self.first_stages()  # raises ConfigError on a malformed value
        if self.first_steps and self.first_steps * len(stages) >= exp.train.steps:
            each = f" ({len(stages)} stages x {self.first_steps} steps)" if len(stages) > 1 else ""
            raise ConfigError(f"data.first_steps={self.first_steps}{each} must be below "
                              f"train.steps={exp.train.steps}: the steps after the curriculum train on every group")
        self.permute_classes()  # each raises ConfigError on a malformed value
        self.augmented_groups()
        if exp.media is not None:
            raise ConfigError("task data trains a text model: remove the media section")

    def permute_classes(self) -> list[list[str]]:
        """data.permute 'a b c; d e' as [['a', 'b', 'c'], ['d', 'e']]; refuses a class of one word or a word in two."""
        classes = [c.split() for c in self.permute.split(";") if c.strip()]
        seen: dict[str, int] = {}
        for i, words in enumerate(classes):
            if len(set(words)) < 2:
                raise ConfigError(f"data.permute class {i + 1} ({' '.join(words)!r}) needs two different words or "
                                  "more to permute; classes are separated by ';', words by spaces")
            for w in words:
                if not re.fullmatch(r"\w+", w):
                    raise ConfigError(f"data.permute: {w!r} is not a word (letters, digits or _); classes are "
                                      "separated by ';', words by spaces")
                if seen.setdefault(w, i) != i:
                    raise ConfigError(f"data.permute: {w!r} is in classes {seen[w] + 1} and {i + 1}; a word belongs "
                                      "to one class")
        return [sorted(set(words)) for words in classes]

    def augmented_groups(self) -> set[int] | None:
        """data.augment_groups '1-19' or '1,2,5' as the set of groups copied; empty: None (all of them)."""
        return group_set("augment_groups", self.augment_groups)

    def supported_groups(self) -> set[int] | None:
        """data.supporting_groups as the set of groups whose targets carry supporting lines; empty: None (all)."""
        return group_set("supporting_groups", self.supporting_groups)

    def first_stages(self) -> list[set[int]]:
        """data.first_groups as one set of group numbers per stage ('1; 1-3' -> [{1}, {1, 2, 3}]); empty: []."""
        if not self.first_groups.strip():
            return []
        parts = self.first_groups.split(";")
        if any(not p.strip() for p in parts):
            raise ConfigError(f"data.first_groups={self.first_groups!r} has an empty stage: stages are separated "
                              "by ';' and each names groups, such as '1; 1-3'")
        return [group_set("first_groups", p) for p in parts]


def group_set(key: str, value: str) -> set[int] | None:
    """Group numbers and ranges, '1-19' or '1,3,5', as a set; empty: None."""
    if not value.strip():
        return None
    out: set[int] = set()
    for part in value.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or int(hi or lo) < int(lo):
            raise ConfigError(f"data.{key}={value!r}: expected group numbers and ranges, such as '1-19' or '1,3,5'")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out
