"""Knowledge distillation: a trained run (train.distill_from) as the frozen teacher of this one.

`check_teacher` refuses, before anything is written, a teacher whose tokenizer or vocabulary
differs from the student's (its logits would not be over the same symbols), one with a shorter
context, a quantized or multimodal one. `load_teacher` restores its parameters straight onto the
student's mesh, laid out by the same logical-axis rules, for the train step
(gptjax/train/step.py: distill_loss), which runs the teacher inside the same jitted function
under `stop_gradient`.
"""
from __future__ import annotations

import logging
import pathlib

import jax

from gptjax.data.tokenizers import load_tokenizer
from gptjax.errors import ConfigError
from gptjax.model.build import build_model
from gptjax.train.restore import load_params_of, quantization, read_run_config, text_example
from gptjax.train.step import Distill, Teacher

log = logging.getLogger(__name__)


def _key(t) -> str:
    return f"train.distill_from={t.distill_from}"


def check_teacher(exp, tokenizer, vocab_size: int):
    """The teacher's experiment, after checking it can teach `exp` (whose data's tokenizer is `tokenizer`)."""
    t = exp.train
    workdir = pathlib.Path(t.distill_from)
    if not (workdir / "checkpoints").is_dir():
        raise ConfigError(f"{_key(t)}: not a trained run folder (no checkpoints/ in it)")
    if quantization(workdir) is not None:
        raise ConfigError(f"{_key(t)} is a quantized workdir; distil from the full-precision run it came from")
    teacher = read_run_config(workdir)
    if teacher.media is not None:
        raise ConfigError(f"{_key(t)} is a multimodal run; distillation here is for text and task models")
    try:
        theirs = load_tokenizer(workdir / "tokenizer")
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{_key(t)}: its tokenizer cannot be read ({type(e).__name__}: {e})") from None
    if theirs.name != tokenizer.name or theirs.fingerprint() != tokenizer.fingerprint():
        raise ConfigError(f"{_key(t)}: the teacher's tokenizer ({theirs.name}, {theirs.vocab_size} symbols) is not "
                          f"this run's ({tokenizer.name}, {tokenizer.vocab_size} symbols); a teacher must read the "
                          "same tokens (train it on this data, or use its tokenizer here)")
    student_vocab = exp.model.vocab_size or vocab_size
    if teacher.model.vocab_size != student_vocab:
        raise ConfigError(f"{_key(t)}: the teacher's vocabulary has {teacher.model.vocab_size} entries, the "
                          f"student's {student_vocab}; set model.vocab_size={teacher.model.vocab_size} here")
    if not teacher.model.is_llama and teacher.model.max_seq_len < exp.model.max_seq_len:
        raise ConfigError(f"{_key(t)}: the teacher reads at most {teacher.model.max_seq_len} positions, the student "
                          f"{exp.model.max_seq_len}; lower model.max_seq_len")
    return teacher


def load_teacher(exp, teacher_exp, mesh) -> Teacher:
    """The teacher's network and parameters on `mesh` (LoRA adapters folded in), with exp's mix."""
    workdir = exp.train.distill_from
    params = load_params_of(workdir, teacher_exp, text_example(teacher_exp), mesh=mesh)
    sharding = jax.tree.map(lambda x: x.sharding, params)
    n = sum(x.size for x in jax.tree.leaves(params))
    log.info("distilling from %s (%s parameters, temperature %g, alpha %g)", workdir, f"{n:,}",
             exp.train.distill_temperature, exp.train.distill_alpha)
    distill = Distill(build_model(teacher_exp, teacher_exp.model), exp.train.distill_temperature,
                      exp.train.distill_alpha)
    return Teacher(distill, params, sharding)
