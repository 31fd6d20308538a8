"""Leave one speaker out: spoken-digit transcription on each of the five FSDD speakers.

Five runs of experiments/spoken_digits.py, each trained on four speakers and
tested on the fifth, so the recipe (tuned while theo was held out) is also
judged on speakers it was not tuned on.

    python scripts/sweep.py run experiments/sweeps/spoken_digits_speakers.py --root runs/speakers --parallel 2
    for w in runs/speakers/*/; do python scripts/evaluate.py --workdir "$w" --task transcribe; done
    python scripts/sweep.py report runs/speakers     # transcribe_accuracy, _wer, _cer per run and their mean

Measured (2 CPU cores, two runs at a time, 864-1167 s each): transcription
accuracy george 0.616, jackson 0.816, nicolas 0.816, theo 0.900, yweweler
0.892; mean 0.808. Held-out eval loss is lowest before the last step for
george (0.237 best, 0.322 final): the model fits the four training voices.
"""
from gptjax.config import Sweep

SWEEP = Sweep(
    base="experiments/spoken_digits.py",
    grid={"data.test_speakers": ["george", "jackson", "nicolas", "theo", "yweweler"]},
)
