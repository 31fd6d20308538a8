"""Two-stage captioning, stage 2 (LLaVA's instruction tuning): projector + LLM, encoder frozen.

Starts from stage 1's parameters (experiments/digits_caption_stage1.py) and
trains image_projector/ and llm/ together for 500 steps; the ViT stays frozen.

  python scripts/train.py experiments/digits_caption_stage2.py --workdir runs/digits_caption_stage2
  python scripts/evaluate.py --workdir runs/digits_caption_stage2 --task caption [--zero_media]
Expect: caption accuracy close to the one-stage run (digits_caption.py, >= 0.95)
in a third of its steps, since encoder and decoder arrive trained.
"""
from gptjax.config import DigitsData, Experiment, ImageEncoderSpec, MediaSpec, ModelSpec, Optimizer, Schedule, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=2, n_head=4, d_model=128, max_seq_len=48),
    schedule=Schedule("warmup_cosine", peak_lr=5e-4, warmup_steps=50, end_lr=5e-5),
    optimizer=Optimizer(b1=0.9, b2=0.99, weight_decay=0.1, clip_norm=1.0, freeze="^image_encoder/"),
    data=DigitsData(task="caption"),
    media=MediaSpec(image=ImageEncoderSpec(image_size=8, patch_size=2, width=64, depth=2, heads=4),
                    image_projector="mlp", mask="prefix"),
    train=Train(steps=500, batch_size=32, eval_every=250, eval_batches=10, checkpoint_every=250, log_every=50,
                sample_tokens=0, init_from="runs/digits_caption_stage1"),
)
