"""Fixtures of the integration tests: the transformers checkpoint made from the SmolLM2 GGUF, and SmolLM2
loaded on each local loader for a test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hf_checkpoint import default_checkpoint_dir, ensure_hf_checkpoint  # tests/: pytest.ini pythonpath
from webui.loaders.llamacpp import LlamaCppBackend
from webui.loaders.transformers import TransformersBackend
from webui.params import LoadOptions


@pytest.fixture(scope="session")
def hf_checkpoint(smollm_path: Path) -> Path:
    """A real-weights transformers model folder (config.json + model.safetensors + tokenizer).

    Made once from the SmolLM2 GGUF (about half a minute) into ``$WEBUI_TEST_CACHE`` or
    ``~/.cache/localllm-webui/test-models``, then reused by every later run.
    """
    return ensure_hf_checkpoint(smollm_path, default_checkpoint_dir())


@pytest.fixture(scope="module")
def llama(smollm_path: Path) -> Iterator[LlamaCppBackend]:
    """SmolLM2 on the llama.cpp loader, context 1024, for one test module (a module may define its own)."""
    backend = LlamaCppBackend.load(smollm_path, LoadOptions(n_ctx=1024))
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def hf(hf_checkpoint: Path) -> Iterator[TransformersBackend]:
    """The SmolLM2 checkpoint on the transformers loader, context 1024, for one test module."""
    backend = TransformersBackend.load(hf_checkpoint, LoadOptions(n_ctx=1024))
    yield backend
    backend.close()
