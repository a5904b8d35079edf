"""Small but valid GGUF files for the vision-projector tests: a "model" and a projector (mmproj).

Written with the ``gguf`` package (llama.cpp's own writer), a few KB each: enough for everything that
reads headers (the model list, the Model tab's facts, hub downloads), not for running a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFType, GGUFWriter


def write_gguf(path: Path, arch: str, gguf_type: str | None = None, vocab: int = 0) -> Path:
    """A GGUF with ``general.architecture`` = ``arch`` (and ``general.type``), one tensor, and ``vocab``
    tokenizer tokens (a model's header has them; a projector's has none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), arch)
    if gguf_type:
        writer.add_type(gguf_type)
    writer.add_name(path.stem)
    if vocab:
        writer.add_tokenizer_model("gpt2")
        writer.add_token_list([f"t{i}" for i in range(vocab)])
    if arch == "llama":
        writer.add_context_length(256)
        writer.add_block_count(1)
    writer.add_tensor("w", np.zeros((8, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def model_file(path: Path) -> Path:
    """A text model's header (architecture llama, type model, a tokenizer)."""
    return write_gguf(path, "llama", GGUFType.MODEL, vocab=16)


def projector_file(path: Path, *, typed: bool = True) -> Path:
    """A projector as llama.cpp writes it (architecture clip, type mmproj); ``typed=False``: as older
    llava projectors, with the architecture only."""
    return write_gguf(path, "clip", GGUFType.MMPROJ if typed else None)
