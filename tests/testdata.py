"""Names and paths of the real test models, importable from any test module.

(Test modules import from here, not from ``conftest``: ``tests/`` is not a
package, so several conftest.py files would shadow one another.)
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
MODELS_DIR = Path(os.environ.get("WEBUI_TEST_MODELS", PROJECT_DIR / "models"))
SMOLLM = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA = "gemma-3-270m-q4_k_m.gguf"
#: SmolLM2's own chat format, written out so tests do not depend on the template code.
PARIS_PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
