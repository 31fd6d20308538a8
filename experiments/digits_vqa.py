"""Image question answering on 8x8 digits: "what digit is this?", "is it even?",
"is it greater than four?", "what is it plus one?", "is it a seven?".

ViT (2 layers, 64 wide, 2x2 patches) -> a linear projector -> a 2-layer,
128-wide decoder, prefix-LM mask; every test image is asked all five questions
(1800 test questions). Also the "pretrained encoder + LLM" that the two-stage
caption recipe (digits_caption_stage1.py, _stage2.py) starts from.

Expect: accuracy >= 0.9 on held-out images; with the images zeroed the model can
only guess the prior answers (~0.3: yes/no questions half right, digit
questions one in ten):
  python scripts/train.py experiments/digits_vqa.py --workdir runs/digits_vqa
  python scripts/evaluate.py --workdir runs/digits_vqa --task vqa [--zero_media]
"""
from gptjax.config import DigitsData, Experiment, ImageEncoderSpec, MediaSpec, ModelSpec, Optimizer, Schedule, Train

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="gpt2", n_layer=2, n_head=4, d_model=128, max_seq_len=48),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=100, end_lr=1e-4),
    optimizer=Optimizer(b1=0.9, b2=0.99, weight_decay=0.1, clip_norm=1.0),
    data=DigitsData(task="vqa"),
    media=MediaSpec(image=ImageEncoderSpec(image_size=8, patch_size=2, width=64, depth=2, heads=4),
                    image_projector="linear", mask="prefix"),
    train=Train(steps=2000, batch_size=32, eval_every=500, eval_batches=10, checkpoint_every=500,
                log_every=50, sample_tokens=0),
)
