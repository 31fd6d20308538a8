"""Shared pytest fixtures: the real-data folder comes from GPTJAX_DATA_DIR."""
import os
import pathlib

import pytest


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The folder of real corpora (tinyshakespeare/, fsdd/); skips when unset."""
    value = os.environ.get("GPTJAX_DATA_DIR")
    if not value:
        pytest.skip("GPTJAX_DATA_DIR is not set: real-data tests need the shared corpora folder")
    path = pathlib.Path(value)
    if not path.is_dir():
        pytest.skip(f"GPTJAX_DATA_DIR={value} is not a folder")
    return path
