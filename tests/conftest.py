"""Shared fixtures: the real test models, and a fresh user-data folder per test.

The models come from ``python download-model.py --starter all`` (run_tests.sh does
it). A missing model is a failure with instructions, never a silent skip.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testdata import GEMMA, MODELS_DIR, SMOLLM


def _require(name: str) -> Path:
    path = MODELS_DIR / name
    if not path.exists():
        pytest.fail(f"Test model {path} is missing. Run ./run_tests.sh, or: python download-model.py --starter all")
    return path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS_DIR


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    return _require(SMOLLM)


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    return _require(GEMMA)


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """An empty user-data folder: nothing a test writes lands in the project."""
    d = tmp_path / "user"
    d.mkdir()
    return d
