"""A real-weights transformers checkpoint for the tests, made from the SmolLM2 GGUF.

No model hub is reachable from the test machines, so the transformers loader is
tested on a folder we make ourselves: transformers reads the GGUF (and
dequantizes it to float32), and ``save_pretrained`` writes an ordinary model
folder (``config.json`` + ``model.safetensors`` + tokenizer files with the
chat template). It is written to a temporary folder next to the target and
renamed into place in one step, so a folder that exists is always complete.

The folder lives outside the repository (``$WEBUI_TEST_CACHE`` or
``~/.cache/localllm-webui/test-models``) so it survives a fresh clone and a
``git clean``. Making it takes about half a minute; after that it is reused.

Run it by hand with ``python tests/hf_checkpoint.py [GGUF] [OUT_DIR]``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CHECKPOINT_NAME = "SmolLM2-135M-Instruct-hf"


def default_cache_dir() -> Path:
    """Folder that holds the made-up test checkpoints (it doubles as a models folder)."""
    env = os.environ.get("WEBUI_TEST_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "localllm-webui" / "test-models"


def default_checkpoint_dir() -> Path:
    return default_cache_dir() / CHECKPOINT_NAME


def is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def ensure_hf_checkpoint(gguf_path: Path, out_dir: Path) -> Path:
    """Return ``out_dir``, first making it from ``gguf_path`` unless it already holds a checkpoint."""
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if is_complete(out_dir):
        return out_dir
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file {gguf_path} is missing; it is needed to make {out_dir}.")
    return atomic_folder(out_dir, is_complete, lambda tmp: _convert(gguf_path, tmp))


def atomic_folder(out_dir: Path, complete: Callable[[Path], bool], make: Callable[[Path], None]) -> Path:
    """Return ``out_dir``, first making it with ``make`` unless ``complete`` says it is there.

    ``make`` writes into a temporary folder next to ``out_dir``, which is then renamed into place in
    one step, so a folder that exists is always complete (another run finishing first is fine). A
    folder that is there but not complete is not ours to trust: it is moved aside and made afresh.
    """
    if complete(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists():
        stale = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.stale-", dir=out_dir.parent))
        os.replace(out_dir, stale / out_dir.name)
        shutil.rmtree(stale, ignore_errors=True)
    _remove_abandoned(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        make(tmp)
        if not complete(tmp):
            raise RuntimeError(f"making {out_dir.name} left an incomplete folder")
        _usual_permissions(tmp)  # mkdtemp and the safetensors writer make them private
        try:
            os.rename(tmp, out_dir)  # atomic; fails if another process finished first
        except OSError:
            if not complete(out_dir):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _remove_abandoned(out_dir: Path, min_age: float = 3600.0) -> None:
    """Delete temp folders that a killed run left behind (old ones only: another run may be writing)."""
    for leftover in out_dir.parent.glob(f".{out_dir.name}.*-*"):
        try:
            if leftover.is_dir() and time.time() - leftover.stat().st_mtime > min_age:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


def _usual_permissions(folder: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~umask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~umask)
    folder.chmod(0o777 & ~umask)


def _convert(gguf_path: Path, dest: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, name = gguf_path.parent, gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    # A GGUF load may leave a quantizer behind; save_pretrained refuses to write a
    # "quantized" model, and the weights are plain float32 by now anyway.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    if not getattr(tokenizer, "chat_template", None):
        raise RuntimeError(f"{name} has no chat template in its metadata; the tests need one.")
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)

    # Check what we wrote before it counts as a checkpoint.
    if not is_complete(dest):
        raise RuntimeError(f"save_pretrained wrote no config.json/.safetensors into {dest}")
    saved = AutoTokenizer.from_pretrained(dest)
    if saved.chat_template != tokenizer.chat_template:
        raise RuntimeError("the saved tokenizer lost the chat template")


if __name__ == "__main__":
    here = Path(__file__).resolve().parent.parent
    gguf = Path(sys.argv[1]) if len(sys.argv) > 1 else here / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else default_checkpoint_dir()
    start = time.perf_counter()
    print(ensure_hf_checkpoint(gguf, out), f"({time.perf_counter() - start:.1f} s)")
