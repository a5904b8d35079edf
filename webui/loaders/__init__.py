"""Loader registry: which ``Backend`` runs which model, chosen by name or inferred from the path."""
from __future__ import annotations

from pathlib import Path

from webui.errors import ModelLoadError, UnknownLoaderError
from webui.loaders.base import Backend, Chunk
from webui.params import LoadOptions
from webui.loaders.llamacpp import LlamaCppBackend
from webui.loaders.remote import RemoteBackend
from webui.loaders.transformers import TransformersBackend, is_hf_folder

LOADERS: dict[str, type[Backend]] = {
    LlamaCppBackend.name: LlamaCppBackend,
    TransformersBackend.name: TransformersBackend,
    RemoteBackend.name: RemoteBackend,
}

__all__ = ["Backend", "Chunk", "LoadOptions", "LOADERS", "get_loader", "infer_loader"]


def get_loader(name: str) -> type[Backend]:
    try:
        return LOADERS[name]
    except KeyError:
        raise UnknownLoaderError(f"Unknown loader {name!r}. Choose one of: {', '.join(LOADERS)}.") from None


def infer_loader(path: Path) -> str:
    """Name of the loader for ``path``: ``.gguf`` file -> llama.cpp, HF folder -> transformers."""
    path = Path(path)
    if path.suffix.lower() == ".gguf" and not path.is_dir():
        return LlamaCppBackend.name
    if is_hf_folder(path):
        return TransformersBackend.name
    if path.is_dir() and any(path.glob("*.gguf")):
        return LlamaCppBackend.name
    raise ModelLoadError(
        f"Cannot tell which loader runs {path.name}: expected a .gguf file or a folder with config.json "
        "and .safetensors files."
    )
