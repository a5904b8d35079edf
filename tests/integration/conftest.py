"""Fixtures of the integration tests: the transformers checkpoint made from the SmolLM2 GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

from hf_checkpoint import default_checkpoint_dir, ensure_hf_checkpoint  # tests/: pytest.ini pythonpath


@pytest.fixture(scope="session")
def hf_checkpoint(smollm_path: Path) -> Path:
    """A real-weights transformers model folder (config.json + model.safetensors + tokenizer).

    Made once from the SmolLM2 GGUF (about half a minute) into ``$WEBUI_TEST_CACHE`` or
    ``~/.cache/localllm-webui/test-models``, then reused by every later run.
    """
    return ensure_hf_checkpoint(smollm_path, default_checkpoint_dir())
