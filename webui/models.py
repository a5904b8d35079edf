"""ModelManager: what is in the models folder, and which model is loaded.

Only one model is in memory at a time. Loading a model frees the previous one
first (a laptop rarely has RAM for two); if the new one then fails to load, the
previous one is loaded again, so a bad file never leaves the user with nothing.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelLoadError, ModelNotFoundError, NoModelLoadedError, WebUIError
from .loaders import Backend, LoadOptions, get_loader, infer_loader
from .loaders.transformers import is_hf_folder
from .storage import safe_name

log = logging.getLogger(__name__)

#: Suffixes of files that are still being written (downloads, copies): never shown as models.
PARTIAL_SUFFIXES = (".partial", ".part", ".tmp", ".incomplete", ".download")

Progress = Callable[[float, str], None]


@dataclass
class LoadedModel:
    name: str
    loader: str
    options: LoadOptions
    backend: Backend
    load_seconds: float
    loaded_at: float = field(default_factory=time.time)

    def describe(self) -> str:
        return (f"{self.name} on {self.loader}: context {self.backend.n_ctx} tokens, "
                f"loaded in {self.load_seconds:.1f} s")


class ModelManager:
    """Lists models in ``model_dir`` and owns the one loaded ``Backend``."""

    def __init__(self, model_dir: Path, default_options: LoadOptions | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.default_options = default_options or LoadOptions()
        # Held while a model is in use (a generation) or being swapped, so a load
        # never frees a model under a running generation.
        self._lock = threading.RLock()
        self._current: LoadedModel | None = None

    # ----- what is on disk -------------------------------------------------------------
    def list_models(self) -> list[str]:
        if not self.model_dir.is_dir():
            return []
        names = []
        for entry in self.model_dir.iterdir():
            if entry.name.startswith(".") or entry.name.endswith(PARTIAL_SUFFIXES):
                continue
            if entry.is_file() and entry.suffix.lower() == ".gguf":
                names.append(entry.name)
            elif is_hf_folder(entry) or (entry.is_dir() and any(entry.glob("*.gguf"))):
                names.append(entry.name)
        return sorted(names, key=str.lower)

    def path_of(self, name: str) -> Path:
        path = self.model_dir / safe_name(name, what="model name")
        if not path.exists():
            raise ModelNotFoundError(f"No model called {name!r} in {self.model_dir}. Available: "
                                     f"{', '.join(self.list_models()) or 'none'}.")
        if path.is_dir() and not is_hf_folder(path):
            ggufs = sorted(path.glob("*.gguf"))
            if ggufs:
                return ggufs[0]
        return path

    def infer_loader(self, name: str) -> str:
        return infer_loader(self.path_of(name))

    # ----- what is loaded --------------------------------------------------------------
    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def load(self, name: str, loader: str | None = None, options: LoadOptions | dict[str, Any] | None = None,
             progress: Progress | None = None) -> LoadedModel:
        """Load ``name`` (freeing the current model). Raises ``WebUIError`` subclasses."""
        if options is None:
            options = self.default_options
        elif isinstance(options, dict):
            options = self.default_options.model_copy(update=options)
            options = LoadOptions.model_validate(options.model_dump())
        if loader == "remote":
            # A remote model is not a file: its name is the model the server is asked for.
            path = Path(options.remote_model or "remote")
        else:
            path = self.path_of(name)
        loader = loader or infer_loader(path)
        backend_cls = get_loader(loader)
        report = progress or (lambda fraction, text: None)
        backend_cls.check(path, options)  # a wrong file fails here, before the loaded model is freed
        with self._lock:
            previous = self._current
            if previous is not None:
                report(0.05, f"Unloading {previous.name}")
                self._close_current()
            report(0.1, f"Loading {name} with {loader}")
            start = time.perf_counter()
            try:
                backend = backend_cls.load(path, options)
            except WebUIError as exc:
                self._restore(previous, report)
                raise self._with_restore_note(exc, previous) from exc
            except Exception as exc:  # a loader bug or an unexpected library error
                log.exception("Loading %s failed", name)
                self._restore(previous, report)
                raise self._with_restore_note(
                    ModelLoadError(f"Loading {name} failed: {type(exc).__name__}: {exc}"), previous) from exc
            if loader == "remote":
                name = str(backend.path)  # the model the server actually serves
            self._current = LoadedModel(name, loader, options, backend, time.perf_counter() - start)
            report(1.0, "Loaded")
            log.info("Loaded %s", self._current.describe())
            return self._current

    def unload(self) -> None:
        with self._lock:
            self._close_current()

    @contextmanager
    def use(self) -> Iterator[LoadedModel]:
        """Hold the loaded model for the duration of one generation."""
        with self._lock:
            if self._current is None:
                raise NoModelLoadedError()
            yield self._current

    def _close_current(self) -> None:
        current, self._current = self._current, None
        if current is not None:
            current.backend.close()

    def _restore(self, previous: LoadedModel | None, report: Progress) -> None:
        if previous is None:
            return
        report(0.5, f"Load failed; loading {previous.name} again")
        try:
            backend = type(previous.backend).load(previous.backend.path, previous.options)
            # (a remote backend's path is only its model name; load() reads the options)
        except Exception:
            log.exception("Could not reload %s after a failed load", previous.name)
            return
        self._current = LoadedModel(previous.name, previous.loader, previous.options, backend,
                                    previous.load_seconds)

    def _with_restore_note(self, exc: WebUIError, previous: LoadedModel | None) -> WebUIError:
        if previous is None:
            return exc
        if self._current is not None and self._current.name == previous.name:
            note = f" {previous.name} is loaded again."
        else:
            note = f" {previous.name} could not be loaded again either; no model is loaded."
        exc.message += note
        exc.args = (exc.message,)
        return exc
