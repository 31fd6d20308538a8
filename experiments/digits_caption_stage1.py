"""Two-stage captioning, stage 1 (LLaVA's feature alignment): train the projector only.

Starts from the VQA run (experiments/digits_vqa.py: its ViT and decoder are the
"pretrained" encoder and LLM) and swaps its linear projector for LLaVA-1.5's
two-layer MLP, whose parameters are new (train.init_from copies only what
matches by name and shape; train.init_from_partial=true says that is meant).
The encoder and the decoder are frozen (optimizer.freeze); only
image_projector/ learns, for 500 steps.

  python scripts/train.py experiments/digits_vqa.py --workdir runs/digits_vqa
  python scripts/train.py experiments/digits_caption_stage1.py --workdir runs/digits_caption_stage1
  python scripts/evaluate.py --workdir runs/digits_caption_stage1 --task caption
train.init_from is relative to where you run (--set train.init_from=DIR for
another place). Expect: the frozen decoder has never written "a handwritten
..."; the projector alone must steer it there, so accuracy stays below stage 2's.
"""
from gptjax.config import DigitsData, Experiment, ImageEncoderSpec, MediaSpec, ModelSpec, Optimizer, Schedule, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=2, n_head=4, d_model=128, max_seq_len=48),  # as digits_vqa
    schedule=Schedule("warmup_cosine", peak_lr=2e-3, warmup_steps=50, end_lr=1e-4),
    optimizer=Optimizer(b1=0.9, b2=0.99, weight_decay=0.0, clip_norm=1.0, freeze="^llm/|^image_encoder/"),
    data=DigitsData(task="caption"),
    media=MediaSpec(image=ImageEncoderSpec(image_size=8, patch_size=2, width=64, depth=2, heads=4),
                    image_projector="mlp", mask="prefix"),
    train=Train(steps=500, batch_size=32, eval_every=250, eval_batches=10, checkpoint_every=250, log_every=50,
                sample_tokens=0, init_from="runs/digits_vqa", init_from_partial=True),
)
