"""A quarter-size student of the CPU GPT (experiments/shakespeare_char_cpu.py), alone or distilled.

4 layers, 4 heads, 64 wide: 0.21M parameters against the teacher's 0.80M; the teacher's data,
schedule and 2000 steps. The CPU-sized version of shakespeare_char_student.py:

  python scripts/train.py experiments/shakespeare_char_cpu.py --workdir runs/sc_cpu
  python scripts/train.py experiments/shakespeare_char_cpu_student.py --workdir runs/sc_cpu_student
  python scripts/train.py experiments/shakespeare_char_cpu_student.py --workdir runs/sc_cpu_student_kd \\
      --set train.distill_from=runs/sc_cpu

Expect: the distilled student below the lone one in eval loss (docs/efficiency.md has the figures).
"""
from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TextData, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=4, n_head=4, d_model=64, max_seq_len=64, dropout=0.0, bias=False),
    schedule=Schedule("warmup_cosine", peak_lr=3e-3, warmup_steps=100, end_lr=1e-4),
    optimizer=Optimizer(b1=0.9, b2=0.99, weight_decay=0.1, clip_norm=1.0),
    data=TextData("tinyshakespeare", tokenizer="char"),
    train=Train(steps=2000, batch_size=12, eval_every=250, eval_batches=20, checkpoint_every=500, log_every=50,
                distill_temperature=2.0, distill_alpha=0.5),
    mesh=Mesh(cpu_devices=2),
)
