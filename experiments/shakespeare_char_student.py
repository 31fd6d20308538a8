"""A quarter-size student of the baby GPT (experiments/shakespeare_char.py), alone or distilled.

6 layers, 6 heads, 192 wide: 2.7M parameters, a quarter of the teacher's 10.7M; the teacher's
data, schedule and 2000 steps. Alone, then distilled from the trained baby GPT
(loss = 0.5 * T^2 * KL(teacher || student at T=2) + 0.5 * cross-entropy):

  python scripts/train.py experiments/shakespeare_char_student.py --workdir runs/sc_student
  python scripts/train.py experiments/shakespeare_char_student.py --workdir runs/sc_student_kd \\
      --set train.distill_from=runs/shakespeare_char

Measured on one H200 (docs/efficiency.md): alone 1.4575, distilled 1.4861. Alone, the student
already matches its teacher (1.4619) on this 1M-character corpus, so the soft labels have nothing
to add; the distillation goal of docs/efficiency.md (0.05 nats below alone) holds for the CPU pair
(shakespeare_char_cpu_student.py), not for this one.
"""
from gptjax.config import Experiment, ModelSpec, Optimizer, Schedule, TextData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=6, n_head=6, d_model=192, max_seq_len=256, dropout=0.1,
                    bias=False),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=100, end_lr=1e-4),
    optimizer=Optimizer(b1=0.9, b2=0.99, weight_decay=0.1, clip_norm=1.0),
    data=TextData("tinyshakespeare", tokenizer="char"),
    train=Train(steps=2000, batch_size=64, eval_every=250, eval_batches=200, checkpoint_every=500,
                distill_temperature=2.0, distill_alpha=0.5),
)
