"""Data: corpora, tokenizers, our TFDS builders (array_record), grain pipelines, multimodal examples,
and `build_data(exp)` (gptjax/data/build.py). Imports config only: no model code."""
