"""Loader registry: which ``Backend`` runs which model, chosen by name or inferred from the path.

The registry is built once (:func:`default_registry`) and handed to the ``ModelManager``; tests
build one with their own loaders in it instead of patching a global table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from webui.errors import ModelLoadError, UnknownLoaderError
from webui.loaders.base import Backend, Capabilities, Chunk
from webui.loaders.llamacpp import LlamaCppBackend
from webui.loaders.remote import RemoteBackend
from webui.loaders.transformers import TransformersBackend, is_hf_folder

__all__ = ["Backend", "Capabilities", "Chunk", "LoaderRegistry", "default_registry", "infer_loader"]


class LoaderRegistry:
    """The loaders an app can use, by their registry names."""

    def __init__(self, loaders: Iterable[type[Backend]]) -> None:
        self._by_name = {cls.name: cls for cls in loaders}

    def get(self, name: str) -> type[Backend]:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownLoaderError(f"Unknown loader {name!r}. Choose one of: {', '.join(self._by_name)}.") from None

    def names(self) -> list[str]:
        return list(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)


def default_registry() -> LoaderRegistry:
    return LoaderRegistry([LlamaCppBackend, TransformersBackend, RemoteBackend])


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
