"""Shared pytest fixtures.

End-to-end tests train on generated data (tests/helpers/generated.py) through the
same builders as the real corpora, so a fresh clone runs them with no setup. Only
the checks of figures on the real corpora read GPTJAX_DATA_DIR (`data_dir`), and
skip, saying so, without it.
"""
import os
import pathlib

import pytest

from helpers.generated import write_corpus, write_digit_tones


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The folder of real corpora (tinyshakespeare/, fsdd/); skips when unset."""
    value = os.environ.get("GPTJAX_DATA_DIR")
    if not value:
        pytest.skip("real-data check: set GPTJAX_DATA_DIR to the folder holding tinyshakespeare/ and fsdd/ "
                    "(the end-to-end tests run on generated data without it)")
    path = pathlib.Path(value)
    if not path.is_dir():
        pytest.skip(f"real-data check: GPTJAX_DATA_DIR={value} is not a folder")
    return path


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory) -> pathlib.Path:
    """About 300 KB of generated play-like text over tiny Shakespeare's 65 characters."""
    return write_corpus(tmp_path_factory.mktemp("corpus") / "generated.txt")


@pytest.fixture(scope="session")
def corpus_overrides(text_corpus) -> list[str]:
    """`--set` values pointing an experiment at the generated corpus."""
    return ["data.dataset=generated", f"data.files={text_corpus}"]


@pytest.fixture(scope="session")
def tone_recordings(tmp_path_factory) -> pathlib.Path:
    """A spoken-digits folder of pure tones, one frequency per digit: 3 speakers x 10 digits x 3."""
    return write_digit_tones(tmp_path_factory.mktemp("tones") / "recordings")
