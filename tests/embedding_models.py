"""The embedding models of the tests: a scripted one for the fast tests, and real all-MiniLM-L6-v2.

- :class:`FakeEmbedder` / :func:`fake_models`: an ``Embedder`` whose vectors count token ids, so the
  batching, truncation, limits and API shapes are tested in milliseconds.
- all-MiniLM-L6-v2, the ``minilm`` starter model (``python download-model.py --starter minilm``;
  run_tests.sh fetches every starter): a sentence-transformers folder, run by the transformers kind.
- :func:`ensure_minilm_gguf`: the same model converted by llama.cpp's own ``convert_hf_to_gguf.py``
  (the copy ``tests/vlm_models.py`` takes from llama-cpp-python's sdist) to an F16 GGUF with its
  pooling declared, as the GGUF embedding models people download are made; run by the llama.cpp kind.
  Made once (a few seconds) into the test-model cache and reused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from testdata import MODELS_DIR
from webui.errors import ModelLoadError
from webui.models.embedders import Embedder
from webui.models.embeddings import EmbeddingModels

MINILM = "all-MiniLM-L6-v2"
MINILM_GGUF_DIR = "all-MiniLM-L6-v2-gguf"
MINILM_GGUF = "all-MiniLM-L6-v2-F16.gguf"
CLS, SEP = 0, 1


class FakeEmbedder(Embedder):
    """BERT-like: [CLS] words [SEP]; a word's id comes from its crc32; the vector counts ids modulo ``dims``."""

    kind: ClassVar[str] = "fake"

    def __init__(self, path: Path, n_ctx: int = 16) -> None:
        self.path, self.dims, self.n_ctx, self.n_vocab, self.pooling = path, 8, n_ctx, 1000, "mean"
        self.batch_tokens, self.batch_sequences = 32, 4
        self.seen: list[list[list[int]]] = []
        self.closed = False
        self.active = 0
        self.overlaps = 0
        self.measure_specials()

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        ids = [zlib.crc32(w.encode()) % 990 + 2 for w in text.split()]
        return [CLS, *ids, SEP] if special else ids

    def embed_tokens(self, sequences: list[list[int]]) -> list[np.ndarray]:
        self.active += 1
        if self.active > 1:
            self.overlaps += 1
        try:
            time.sleep(0.002)  # room for another thread to come in, if the lock let it
            self.seen.append([list(s) for s in sequences])
            return [np.bincount(np.array(s) % self.dims, minlength=self.dims).astype(np.float32) for s in sequences]
        finally:
            self.active -= 1

    def close(self) -> None:
        self.closed = True


def fake_models(tmp_path: Path, **kwargs) -> tuple[EmbeddingModels, list[FakeEmbedder]]:
    """``EmbeddingModels`` over a models folder with ``embed.gguf``, ``other.gguf`` and ``broken.gguf``
    (which fails to load), opened as :class:`FakeEmbedder`; the list collects what was opened."""
    models_dir = tmp_path / "models"
    models_dir.mkdir(exist_ok=True)
    for name in ("embed.gguf", "other.gguf", "broken.gguf"):
        (models_dir / name).write_bytes(b"GGUF")
    opened: list[FakeEmbedder] = []

    def opener(path: Path, ctx_size: int) -> Embedder:
        if path.name == "broken.gguf":
            raise ModelLoadError("broken.gguf is broken")
        opened.append(FakeEmbedder(path, **kwargs))
        return opened[-1]

    return EmbeddingModels(models_dir, ctx_size=512, opener=opener), opened


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 starter folder; FileNotFoundError says how to fetch it."""
    folder = MODELS_DIR / MINILM
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"Test model {folder} is missing. Run ./run_tests.sh, or: python download-model.py --starter minilm"
        )
    return folder


def ensure_minilm_gguf(out_dir: Path | None = None) -> Path:
    """all-MiniLM-L6-v2 as an F16 GGUF (llama.cpp's converter), made first if it is not in the cache."""
    from hf_checkpoint import atomic_folder, default_cache_dir

    out = Path(out_dir) if out_dir is not None else default_cache_dir() / MINILM_GGUF_DIR
    atomic_folder(out, lambda d: (d / MINILM_GGUF).is_file(), lambda dest: _convert(minilm_folder(), dest))
    return out / MINILM_GGUF


def _convert(folder: Path, dest: Path) -> None:
    from vlm_models import converter_dir

    converter = converter_dir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(converter / "gguf-py"), str(converter)])
    env.setdefault("HF_HUB_OFFLINE", "1")
    out = dest / MINILM_GGUF
    cmd = [sys.executable, str(converter / "convert_hf_to_gguf.py"), str(folder), "--outtype", "f16"]
    result = subprocess.run([*cmd, "--outfile", str(out)], env=env, capture_output=True, text=True, cwd=dest)
    if result.returncode != 0 or not out.is_file():
        raise RuntimeError(f"convert_hf_to_gguf.py failed on {folder.name}:\n{result.stderr[-4000:]}")


if __name__ == "__main__":
    print(ensure_minilm_gguf())
