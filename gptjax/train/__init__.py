"""Training: optimizer, the pure step, the loop, checkpoints, guards, metrics; assembling a run
(gptjax/train/setup.py) and restoring one (gptjax/train/restore.py); the dry run."""
