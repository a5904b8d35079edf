"""A main model and a draft model with the same vocabulary, for the draft-model tests and benchmark.

The test models are one of each family (SmolLM2-135M and gemma-3-270m do not share a tokenizer), so the
pair is SmolLM2 itself: ``SmolLM2-135M-Instruct.F16.gguf`` (made here from the Q4_1 file by llama.cpp's own
quantizer, ``llama_model_quantize`` to F16: 271 MB, its weights as the Q4_1 holds them) as the main model,
drafted for by the Q4_1 file (98 MB). Their greedy texts differ from the first tokens, as two quantizations
of one model do, so drafts are mostly but not always right: both paths of the check are taken. Made once
(under a second) into the test-model cache and reused.
"""

from __future__ import annotations

import os
from pathlib import Path

from testdata import MODELS_DIR, SMOLLM

SMOLLM_F16 = "SmolLM2-135M-Instruct.F16.gguf"
SMOLLM_F16_DIR = "smollm2-f16"
#: llama.cpp's ``LLAMA_FTYPE_MOSTLY_F16``
_FTYPE_F16 = 1


def ensure_smollm_f16(out_dir: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as an F16 GGUF, made first if it is not in the cache."""
    from hf_checkpoint import atomic_folder, default_cache_dir

    out = Path(out_dir) if out_dir is not None else default_cache_dir() / SMOLLM_F16_DIR
    atomic_folder(out, lambda d: (d / SMOLLM_F16).is_file(), _make)
    return out / SMOLLM_F16


def _make(dest: Path) -> None:
    import llama_cpp

    source = MODELS_DIR / SMOLLM
    if not source.is_file():
        raise RuntimeError(f"{source} is missing: run python download-model.py --starter all")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _FTYPE_F16
    params.allow_requantize = True  # from Q4_1 weights (dequantized, then stored as F16)
    params.nthread = min(4, os.cpu_count() or 1)
    out = dest / SMOLLM_F16
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if code != 0 or not out.is_file():
        raise RuntimeError(f"llama_model_quantize could not make {out.name} from {source.name} (returned {code})")


if __name__ == "__main__":
    print(ensure_smollm_f16())
