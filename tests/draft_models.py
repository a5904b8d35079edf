"""A main model and a draft model with the same vocabulary, for the draft-model tests and benchmark.

The test models are one of each family (SmolLM2-135M and gemma-3-270m do not share a tokenizer), so the
pair is SmolLM2 itself: ``SmolLM2-135M-Instruct.Q8_0.gguf`` (made here from the Q4_1 file by llama.cpp's own
quantizer, ``llama_model_quantize``: 145 MB, its weights as the Q4_1 holds them) as the main model, drafted
for by the Q4_1 file (98 MB). Their greedy texts differ from the first tokens, as two quantizations of one
model do, so drafts are mostly but not always right: both paths of the check are taken.

(An F16 main model would be the usual choice, but llama.cpp's CPU computes a token of F16 weights alone
otherwise than beside others, so its text would depend on the drafts; quantized weights do not.)
Made once (under a second) into the test-model cache and reused.
"""

from __future__ import annotations

import os
from pathlib import Path

from testdata import MODELS_DIR, SMOLLM

SMOLLM_Q8 = "SmolLM2-135M-Instruct.Q8_0.gguf"
SMOLLM_F16 = "SmolLM2-135M-Instruct.F16.gguf"
#: llama.cpp's ``LLAMA_FTYPE_MOSTLY_*`` numbers
_FTYPES = {SMOLLM_Q8: 7, SMOLLM_F16: 1}


def ensure_smollm_q8(out_dir: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a Q8_0 GGUF, made first if it is not in the cache."""
    return _ensure(SMOLLM_Q8, "smollm2-q8_0", out_dir)


def ensure_smollm_f16(out_dir: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as an F16 GGUF (the benchmark's slower main model), made first if it is not there."""
    return _ensure(SMOLLM_F16, "smollm2-f16", out_dir)


def _ensure(name: str, folder: str, out_dir: Path | None) -> Path:
    from hf_checkpoint import atomic_folder, default_cache_dir

    out = Path(out_dir) if out_dir is not None else default_cache_dir() / folder
    atomic_folder(out, lambda d: (d / name).is_file(), lambda dest: _make(dest, name))
    return out / name


def _make(dest: Path, name: str) -> None:
    import llama_cpp

    source = MODELS_DIR / SMOLLM
    if not source.is_file():
        raise RuntimeError(f"{source} is missing: run python download-model.py --starter all")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _FTYPES[name]
    params.allow_requantize = True  # from Q4_1 weights (dequantized, then stored again)
    params.nthread = min(4, os.cpu_count() or 1)
    out = dest / name
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if code != 0 or not out.is_file():
        raise RuntimeError(f"llama_model_quantize could not make {out.name} from {source.name} (returned {code})")


if __name__ == "__main__":
    print(ensure_smollm_q8())
    print(ensure_smollm_f16())
