"""ModelManager: what is in the models folder, and which model is loaded.

Only one model is in memory at a time. Loading a model frees the previous one
first (a laptop rarely has RAM for two); if the new one then fails to load, the
previous one is loaded again, so a bad file never leaves the user with nothing.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from webui.errors import (
    InvalidNameError,
    ModelLoadError,
    ModelNotFoundError,
    NoModelLoadedError,
    SettingsError,
    WebUIError,
)
from webui.loaders import Backend, LoaderRegistry, default_registry, infer_loader
from webui.loaders.mtmd import is_projector
from webui.loaders.transformers import is_hf_folder
from webui.models.facts import ModelFacts, model_facts, model_ggufs, projector_not_a_model
from webui.models.model_settings import MODEL_SETTINGS_FILE, ModelSettings
from webui.params import LoadOptions
from webui.storage import TEMP_SUFFIX, read_yaml, safe_name, write_yaml

log = logging.getLogger(__name__)

#: Suffixes of files that are still being written (downloads, copies): never shown as models.
PARTIAL_SUFFIXES = (".partial", ".part", ".tmp", ".incomplete", ".download")

Progress = Callable[[float, str], None]

def _available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available + psutil.swap_memory().free)


@dataclass
class LoadedModel:
    name: str
    loader: str
    options: LoadOptions
    backend: Backend
    load_seconds: float
    loaded_at: float = field(default_factory=time.time)
    #: Where it was loaded from (None: a server's model, see ``Capabilities.local_files``).
    path: Path | None = None

    def describe(self) -> str:
        return (f"{self.name} on {self.loader}: context {self.backend.n_ctx} tokens, "
                f"loaded in {self.load_seconds:.1f} s")


def release_free_memory() -> None:
    """Hand memory freed by an unloaded model back to the OS.

    glibc keeps freed heap pages in its arenas; after a model is closed they stay in
    the process (bench/memory.py measured RSS growing ~10 MB per load over 20 loads).
    ``gc.collect`` drops Python's last references, ``malloc_trim`` returns the pages.
    """
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to trim
        pass


class ModelManager:
    """Lists models in ``model_dir`` and owns the one loaded ``Backend``."""

    def __init__(self, model_dir: Path, default_options: LoadOptions | None = None,
                 available_memory: Callable[[], int] | None = None, loaders: LoaderRegistry | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.default_options = default_options or LoadOptions()
        #: The loaders this manager may use (built once; tests pass their own).
        self.loaders = loaders or default_registry()
        #: Bytes of RAM (plus free swap) a new model may use; injectable for tests.
        self.available_memory = available_memory or _available_memory
        # Held while a model is in use (a generation) or being swapped, so a load
        # never frees a model under a running generation.
        self._lock = threading.RLock()
        self._current: LoadedModel | None = None
        #: Where loaders that can save prompt states keep them, and how many bytes (None / 0: off).
        self.warm_dir: Path | None = None
        self.warm_bytes = 0

    # ----- what is on disk -------------------------------------------------------------
    def list_models(self) -> list[str]:
        if not self.model_dir.is_dir():
            return []
        names = []
        for entry in self.model_dir.iterdir():
            if entry.name.startswith(".") or entry.name.endswith(PARTIAL_SUFFIXES):
                continue
            if entry.is_file() and entry.suffix.lower() == ".gguf":
                if not is_projector(entry):  # a vision projector (mmproj) is loaded with its model, never alone
                    names.append(entry.name)
            elif is_hf_folder(entry) or (entry.is_dir() and model_ggufs(entry)):
                names.append(entry.name)
        return sorted(names, key=str.lower)

    def path_of(self, name: str) -> Path:
        path = self.model_dir / safe_name(name, what="model name")
        if not path.exists():
            available = ", ".join(self.list_models()) or "none"
            raise ModelNotFoundError(f"No model called {name!r} in {self.model_dir}. Available: {available}.",
                                     key="error.model_not_found", name=repr(name), folder=str(self.model_dir),
                                     available=available)
        if path.is_dir() and not is_hf_folder(path):
            # A vision model's folder also holds its projector (mmproj-*.gguf): that is not the model.
            ggufs = model_ggufs(path)
            if ggufs:
                return ggufs[0]
        elif path.is_file() and is_projector(path):
            raise projector_not_a_model(path)
        return path

    def infer_loader(self, name: str) -> str:
        return infer_loader(self.path_of(name))

    def facts(self, name: str) -> ModelFacts:
        """What the model is (architecture, size, context, RAM needed), read without loading it."""
        path = self.model_dir / safe_name(name, what="model name")
        if not path.exists():
            self.path_of(name)  # raises the usual "no model called ..." error
        return model_facts(path)

    # ----- per-model settings ------------------------------------------------------------
    @property
    def settings_file(self) -> Path:
        return self.model_dir / MODEL_SETTINGS_FILE

    def _read_settings_file(self) -> dict[str, Any]:
        if not self.settings_file.exists():
            return {}
        return read_yaml(self.settings_file)

    def model_settings(self, name: str) -> ModelSettings:
        """Saved settings for ``name`` (empty when there are none).

        Keys are model names; a key ending in ``$`` is a regular expression as in
        text-generation-webui (``.*llama.*$``). Matching patterns apply in file
        order; the exact name wins.
        """
        data = self._read_settings_file()
        merged: dict[str, Any] = {}
        exact = None
        for key, entry in data.items():
            if not isinstance(entry, dict):
                continue
            key = str(key)
            if key == name:
                exact = entry
            elif key.endswith("$"):
                try:
                    if re.match(key, name, re.IGNORECASE):
                        merged.update(entry)
                except re.error:
                    log.warning("Ignoring the invalid pattern %r in %s", key, self.settings_file)
        merged.update(exact or {})
        try:
            return ModelSettings.from_entry(merged)
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else None
            detail = f"{first['loc'][0] if first['loc'] else ''} {first['msg']}" if first else str(exc)
            raise SettingsError(f"The saved settings for {name} in {self.settings_file.name} are invalid: {detail}",
                                key="error.model_settings_invalid", name=name, file=self.settings_file.name,
                                detail=detail) from exc

    def save_model_settings(self, name: str, settings: ModelSettings) -> Path:
        """Store ``settings`` for ``name`` in the models folder, keeping every other entry of the file."""
        name = safe_name(name, what="model name")
        if settings.loader:
            self.loaders.get(settings.loader)
        data = self._read_settings_file()  # a file that does not parse is never overwritten
        data[name] = settings.to_entry()
        write_yaml(self.settings_file, data)
        return self.settings_file

    def options_for(self, name: str, base: LoadOptions | None = None,
                    explicit: dict[str, Any] | None = None) -> tuple[str | None, LoadOptions]:
        """Loader and options to load ``name`` with: ``base`` < the model's saved settings < ``explicit``."""
        saved = self.model_settings(name)
        merged = {**(base or self.default_options).model_dump(), **saved.options, **(explicit or {})}
        return saved.loader, LoadOptions.model_validate(merged)

    # ----- import and delete ---------------------------------------------------------------
    def import_model(self, source: str | Path, mode: str = "link", name: str | None = None) -> str:
        """Put the model at ``source`` (a .gguf file or a model folder anywhere) into the models folder.

        ``mode`` is ``link`` (a symbolic link: no extra disk space) or ``copy``. A copy
        is written under a hidden temporary name and renamed when complete.
        """
        src = Path(str(source).strip().strip('"')).expanduser()
        if not str(source).strip():
            raise ModelNotFoundError("Type the path of a .gguf file or a model folder to import.",
                                     key="error.import_no_path")
        if not src.exists():
            raise ModelNotFoundError(f"Nothing at {src}: check the path.", key="error.import_nothing_at", path=str(src))
        shown_name = Path(os.path.abspath(src)).name  # the name the user sees, even for a link
        src = src.resolve()
        if src.is_file():
            if src.suffix.lower() != ".gguf":
                raise ModelLoadError(f"{src.name} is not a .gguf file. Import a .gguf file or a model folder.",
                                     key="error.import_not_gguf_name", name=src.name)
            with open(src, "rb") as f:
                if f.read(4) != b"GGUF":
                    raise ModelLoadError(f"{src.name} is not a GGUF model (it does not start with 'GGUF').",
                                         key="error.import_not_gguf", name=src.name)
            if is_projector(src):
                # A projector alone cannot be loaded: import the folder that holds it and its model.
                raise projector_not_a_model(src)
        elif not (is_hf_folder(src) or any(src.glob("*.gguf"))):
            raise ModelLoadError(f"{src} is neither a .gguf file nor a model folder (config.json, or .gguf files).",
                                 key="error.import_not_model", path=str(src))
        target_name = safe_name(name or shown_name, what="model name")
        target = self.model_dir / target_name
        if target.exists() or target.is_symlink():
            raise InvalidNameError(f"There is already a model called {target_name} in {self.model_dir}.",
                                   key="error.import_exists", name=target_name, folder=str(self.model_dir))
        if src.parent == self.model_dir.resolve() and src.name == target_name:
            raise InvalidNameError(f"{src.name} is already in the models folder.", key="error.import_already_in",
                                   name=src.name)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        if mode == "link":
            os.symlink(src, target, target_is_directory=src.is_dir())
        elif mode == "copy":
            tmp = self.model_dir / f".{target_name}.{os.getpid()}{TEMP_SUFFIX}"
            try:
                if src.is_dir():
                    shutil.copytree(src, tmp, symlinks=False)
                else:
                    shutil.copyfile(src, tmp)
                os.replace(tmp, target)
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
                detail = exc.strerror or str(exc)
                raise ModelLoadError(f"Copying {src.name} failed: {detail}. Nothing was imported.",
                                     key="error.import_copy_failed", name=src.name, detail=detail) from exc
        else:
            raise ValueError(f"unknown import mode {mode!r}")
        log.info("Imported %s as %s (%s)", src, target, mode)
        return target_name

    def delete_model(self, name: str) -> str:
        """Delete a model from the models folder (an imported link: only the link). Unloads it first."""
        target = self.model_dir / safe_name(name, what="model name")
        if not (target.exists() or target.is_symlink()):
            raise ModelNotFoundError(f"No model called {name!r} in {self.model_dir}.", key="error.model_missing",
                                     name=repr(name), folder=str(self.model_dir))
        if target.parent.resolve() != self.model_dir.resolve():
            raise InvalidNameError(f"{name!r} is not inside the models folder.", key="error.model_outside",
                                   name=repr(name))
        with self._lock:
            if self._current is not None and self._current.name == target.name:
                self._close_current()
            if target.is_symlink() or target.is_file():
                what = "link removed; the original is untouched" if target.is_symlink() else "file deleted"
                target.unlink()
            else:
                shutil.rmtree(target)
                what = "folder deleted"
        data = self._read_settings_file() if self.settings_file.exists() else {}
        if target.name in data:
            data.pop(target.name)
            write_yaml(self.settings_file, data)
        return what

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
        path: Path | None
        if loader is None:
            path = self.path_of(name)
            loader = infer_loader(path)
            backend_cls = self.loaders.get(loader)
        else:
            backend_cls = self.loaders.get(loader)
            # A server's model is not a file: its name is the model the server is asked for.
            path = self.path_of(name) if backend_cls.capabilities.local_files else None
        report = progress or (lambda fraction, text: None)
        backend_cls.check(path, options)  # a wrong file fails here, before the loaded model is freed
        requested = options  # what the model is saved and reloaded with (parallel 0 stays "auto")
        if "parallel" in backend_cls.option_fields and options.parallel == 0 and path is not None:
            options = options.model_copy(update={"parallel": self.auto_parallel(path, options)})
        if path is not None:
            self.check_memory(name, path, options)  # so does a context too big for this machine's RAM
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
                    ModelLoadError(f"Loading {name} failed: {type(exc).__name__}: {exc}", key="error.load_failed",
                                   name=name, detail=f"{type(exc).__name__}: {exc}"), previous) from exc
            if backend.served_name:
                name = backend.served_name  # the model the server actually serves
            if backend.capabilities.warm_states and self.warm_dir is not None and self.warm_bytes > 0:
                backend.attach_warm_store(self.warm_dir, self.warm_bytes)
            self._current = LoadedModel(name, loader, requested, backend, time.perf_counter() - start, path=path)
            report(1.0, "Loaded")
            log.info("Loaded %s", self._current.describe())
            return self._current

    def auto_parallel(self, path: Path, options: LoadOptions) -> int:
        """Slots for ``parallel`` = 0: 4 when the extra contexts fit in half the free RAM, else 2, else 1."""
        try:
            facts = model_facts(path)
        except WebUIError:
            return 1
        ctx = options.n_ctx or facts.context_length or 4096
        free = self.available_memory() - facts.ram_estimate(options.n_ctx)
        kv = facts.kv_cache_bytes(ctx, 2)
        for n in (4, 2):
            if (n - 1) * kv <= free / 2:
                return n
        return 1

    def check_memory(self, name: str, path: Path, options: LoadOptions) -> None:
        """Raise ``ModelLoadError`` if ``name`` at ``options.n_ctx`` cannot fit in free RAM.

        Loading a model that does not fit gets the process killed by the OS (or the
        machine swapping for minutes) with no message at all; the estimate from the
        file's header (weights + KV cache + buffers) refuses it before anything is
        allocated or the loaded model is freed. The loaded model's own share is
        counted as free, since loading frees it first. A file whose header cannot be
        read is left to the loader, which says what is wrong with it.
        """
        try:
            facts = model_facts(path)
        except WebUIError as exc:
            log.debug("No RAM estimate for %s: %s", name, exc.message)
            return
        need = facts.ram_estimate(options.n_ctx) + (max(1, options.parallel) - 1) * facts.kv_cache_bytes(
            options.n_ctx or facts.context_length or 4096, 2)
        free = self.available_memory()
        current = self._current
        if current is not None and current.path is not None:
            try:
                free += model_facts(current.path).ram_estimate(current.options.n_ctx)
            except (WebUIError, OSError):
                pass
        if need > free:
            from webui.units import human_size

            ctx = options.n_ctx or facts.context_length or 4096
            kv = facts.kv_cache_bytes(ctx)
            error = ModelLoadError(
                f"Not enough memory to load {name} with a context of {ctx:,} tokens: it needs about "
                f"{human_size(need)} of RAM and this machine has about {human_size(free)} free.",
                key="error.not_enough_memory", name=name, ctx=f"{ctx:,}", need=human_size(need), free=human_size(free))
            if kv > need / 4:
                error.add_sentence(f"The context alone takes about {human_size(kv)}: load it with a smaller context "
                                   "(Context size / --ctx-size).", "error.memory_hint_context", kv=human_size(kv))
            else:
                error.add_sentence("Close other programs or pick a smaller model or quantisation.",
                                   "error.memory_hint_other")
            raise error

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
            del current
            release_free_memory()

    def _restore(self, previous: LoadedModel | None, report: Progress) -> None:
        if previous is None:
            return
        report(0.5, f"Load failed; loading {previous.name} again")
        try:
            options = previous.options
            if "parallel" in type(previous.backend).option_fields and options.parallel == 0 and previous.path:
                options = options.model_copy(update={"parallel": self.auto_parallel(previous.path, options)})
            backend = type(previous.backend).load(previous.path, options)
        except Exception:
            log.exception("Could not reload %s after a failed load", previous.name)
            return
        self._current = LoadedModel(previous.name, previous.loader, previous.options, backend,
                                    previous.load_seconds, path=previous.path)

    def _with_restore_note(self, exc: WebUIError, previous: LoadedModel | None) -> WebUIError:
        if previous is None:
            return exc
        if self._current is not None and self._current.name == previous.name:
            exc.add_sentence(f"{previous.name} is loaded again.", "error.note_restored", name=previous.name)
        else:
            exc.add_sentence(f"{previous.name} could not be loaded again either; no model is loaded.",
                         "error.note_not_restored", name=previous.name)
        return exc
