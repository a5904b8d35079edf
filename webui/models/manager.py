"""ModelManager: what is in the models folder, and which models are loaded.

By default one model is in memory at a time. Loading a model frees the previous
one first (a laptop rarely has RAM for two); if the new one then fails to load,
the previous one is loaded again, so a bad file never leaves the user with nothing.

With a memory budget (``budget_bytes``, ``--models-budget-mb``) several models stay
loaded side by side: a load keeps the others while their memory and the new
model's fit in the budget, and unloads the least recently used ones when they do
not. The model loaded last from the Model tab is the *main* one (the Chat,
Notebook and Compare tabs use it); API requests are routed by their ``model``
field (:meth:`ModelManager.route`). A model a server serves (the remote loader)
takes no memory here, so a local GGUF and a bigger engine behind the remote loader
can be served side by side under their own names. Models other than the main one
are unloaded after ``ttl_seconds`` without a request.
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
from webui.loaders.transformers import is_embedding_folder, is_hf_folder
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
    #: Bytes of RAM it takes: the larger of the estimate from its file and the RSS growth measured
    #: while it loaded (0: a server's model).
    memory_bytes: int = 0
    #: When a request last used it (``time.time()``): the least recently used goes first, and the
    #: idle time-to-live counts from here.
    last_used: float = field(default_factory=time.time)
    #: Requests it has served since it was loaded.
    requests: int = 0

    def describe(self) -> str:
        return (f"{self.name} on {self.loader}: context {self.backend.n_ctx} tokens, "
                f"loaded in {self.load_seconds:.1f} s")


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


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
    """Lists models in ``model_dir`` and owns the loaded ``Backend`` (or several, within a memory budget)."""

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
        #: Loaded models by name, the main one (see :attr:`current`) under ``_main``.
        self._loaded: dict[str, LoadedModel] = {}
        self._main: str | None = None
        #: Bytes of RAM the loaded models may take together (0: one model at a time).
        self.budget_bytes = 0
        #: Seconds without a request after which a model other than the main one is unloaded (0: never).
        self.ttl_seconds = 0.0
        #: Whether an API request naming a model in the folder that is not loaded loads it.
        self.load_on_demand = False
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

    def text_models(self) -> list[str]:
        """The models that write text: :meth:`list_models` without the embedding models (sentence-transformers
        folders, which only ``/v1/embeddings`` runs), for the places that generate, such as the Compare tab."""
        return [n for n in self.list_models() if not is_embedding_folder(self.model_dir / n)]

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
            if target.name in self._loaded:
                self._close(target.name)
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
        """The main model: the one loaded last from the Model tab (the Chat, Notebook and Compare tabs use it)."""
        return self._loaded.get(self._main) if self._main is not None else None

    def loaded_models(self) -> list[LoadedModel]:
        """Every loaded model, the main one first."""
        # Without the lock, which a generation holds for its whole length: a copy made in one step.
        models = list(self._loaded.values())
        return sorted(models, key=lambda m: m.name != self._main)

    def load(self, name: str, loader: str | None = None, options: LoadOptions | dict[str, Any] | None = None,
             progress: Progress | None = None, main: bool = True) -> LoadedModel:
        """Load ``name`` and make it the main model (``main``; else an extra one, loaded for a request).

        Without a memory budget the loaded model is freed first; with one, only the least recently
        used models that do not fit beside it. Raises ``WebUIError`` subclasses.
        """
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
        if "draft_model" in backend_cls.option_fields and options.draft_model.strip():
            options = options.model_copy(update={"draft_model": self._draft_file(options.draft_model)})
        need = self.memory_estimate(path, options)
        with self._lock:
            evict = self._to_evict(name, need)
            if path is not None:
                # so does a context too big for this machine's RAM, or a model bigger than the budget
                self.check_memory(name, path, options, need, freed=evict)
            previous = self.current
            for old in evict:
                report(0.05, f"Unloading {old.name}")
                self._close(old.name)
            report(0.1, f"Loading {name} with {loader}")
            start = time.perf_counter()
            rss_before = _rss()
            lost = previous if previous in evict else None
            try:
                backend = backend_cls.load(path, options)
            except WebUIError as exc:
                self._restore(lost, report)
                raise self._with_restore_note(exc, lost) from exc
            except Exception as exc:  # a loader bug or an unexpected library error
                log.exception("Loading %s failed", name)
                self._restore(lost, report)
                raise self._with_restore_note(
                    ModelLoadError(f"Loading {name} failed: {type(exc).__name__}: {exc}", key="error.load_failed",
                                   name=name, detail=f"{type(exc).__name__}: {exc}"), lost) from exc
            if backend.served_name:
                name = backend.served_name  # the model the server actually serves
                if name in self._loaded:
                    self._close(name)  # the same server model loaded again (new address or options)
            if backend.capabilities.warm_states and self.warm_dir is not None and self.warm_bytes > 0:
                backend.attach_warm_store(self.warm_dir, self.warm_bytes)
            memory = max(need, _rss() - rss_before) if path is not None else 0
            loaded = LoadedModel(name, loader, requested, backend, time.perf_counter() - start, path=path,
                                 memory_bytes=memory)
            self._loaded[name] = loaded
            if main or self._main is None:
                self._main = name
            report(1.0, "Loaded")
            log.info("Loaded %s", loaded.describe())
            return loaded

    def memory_estimate(self, path: Path | None, options: LoadOptions) -> int:
        """Bytes of RAM the model at ``path`` takes with ``options`` (weights, KV cache per slot, buffers);
        0 for a server's model or a file whose header cannot be read."""
        if path is None:
            return 0
        try:
            facts = model_facts(path)
        except WebUIError:
            return 0
        need = facts.ram_estimate(options.n_ctx) + (max(1, options.parallel) - 1) * facts.kv_cache_bytes(
            options.n_ctx or facts.context_length or 4096, 2)
        draft = Path(options.draft_model.strip())
        if draft.is_absolute() and draft.is_file():  # a draft model (its path, as load() passes it)
            need += self.memory_estimate(draft, options.model_copy(update={"draft_model": ""}))
        return need

    def _draft_file(self, name: str) -> str:
        """A draft model named as in the model list, as its path in the models folder; any other value as it
        is (the loader looks for it beside the model, and explains what is wrong with it)."""
        try:
            path = self.path_of(name.strip())
        except WebUIError:
            return name
        return str(path.absolute()) if path.is_file() else name

    def _to_evict(self, name: str, need: int) -> list[LoadedModel]:
        """The loaded models to free before loading ``name`` (``need`` bytes): all of them without a budget;
        with one, the same model loaded again and the least recently used that do not fit beside it."""
        if not self.budget_bytes:
            return list(self._loaded.values())
        if need > self.budget_bytes:
            from webui.units import human_size

            raise ModelLoadError(
                f"{name} needs about {human_size(need)} of RAM, more than the memory budget for loaded models "
                f"({human_size(self.budget_bytes)}, --models-budget-mb). Raise the budget or pick a smaller "
                "model, quantisation or context.",
                key="error.over_budget", name=name, need=human_size(need), budget=human_size(self.budget_bytes))
        evict = [m for m in self._loaded.values() if m.name == name]
        keep = sorted((m for m in self._loaded.values() if m.name != name), key=lambda m: m.last_used)
        total = sum(m.memory_bytes for m in keep)
        while keep and total + need > self.budget_bytes:
            old = keep.pop(0)
            evict.append(old)
            total -= old.memory_bytes
        return evict

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

    def check_memory(self, name: str, path: Path, options: LoadOptions, need: int,
                     freed: list[LoadedModel] | None = None) -> None:
        """Raise ``ModelLoadError`` if ``name`` at ``options.n_ctx`` cannot fit in free RAM.

        Loading a model that does not fit gets the process killed by the OS (or the
        machine swapping for minutes) with no message at all; the estimate from the
        file's header (weights + KV cache + buffers) refuses it before anything is
        allocated or the loaded model is freed. ``need`` is :meth:`memory_estimate`'s (0: the
        header cannot be read, which is left to the loader to explain). The share of the
        models the load frees first (``freed``; default: every loaded one) is counted as free.
        """
        free = self.available_memory()
        for old in (list(self._loaded.values()) if freed is None else freed):
            free += old.memory_bytes
        if need > free:
            from webui.units import human_size

            facts = model_facts(path)  # read again only to explain (the estimate read it without error)
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

    def unload(self, name: str | None = None) -> None:
        """Free ``name`` (None: every loaded model)."""
        with self._lock:
            for loaded in list(self._loaded.values()):
                if name is None or loaded.name == name:
                    self._close(loaded.name)

    # ----- which model serves a request ---------------------------------------------------
    def folder_name(self, name: str) -> str | None:
        """The name in the models folder that ``name`` means (exact, any case, or without ``.gguf``)."""
        wanted = name.strip().casefold()
        for candidate in self.list_models():
            folded = candidate.casefold()
            if wanted in (folded, folded.removesuffix(".gguf")):
                return candidate
        return None

    def find(self, name: str | None) -> LoadedModel | None:
        """The loaded model a request naming ``name`` goes to (None: none).

        No name: the main model. A loaded model's name (any case, with or without ``.gguf``) or the
        name its server serves: that model. Any other name not in the models folder, with one model
        loaded: that model (clients send their own names, "gpt-4o-mini"; the reply says which answered).
        """
        if not name or not name.strip():
            return self.current
        wanted = name.strip().casefold()
        models = list(self._loaded.values())  # a copy: read without the lock by goes_to
        for loaded in models:
            names = {loaded.name.casefold(), loaded.name.casefold().removesuffix(".gguf")}
            if loaded.backend.served_name:
                names.add(loaded.backend.served_name.casefold())
            if wanted in names:
                return loaded
        if len(models) == 1 and self.folder_name(name) is None:
            return models[0]
        return None

    def goes_to(self, name: str | None, loaded: LoadedModel) -> bool:
        """Whether a request for ``name`` runs on ``loaded`` (the scheduler asks, between decode steps)."""
        return self.find(name) is loaded

    def route(self, name: str | None) -> str | None:
        """Where a request naming ``name`` goes, checked before it is queued: None for the main model, else
        the model's name (one that is loaded, or one in the folder to load first when ``load_on_demand``).

        Raises ``ModelNotFoundError`` (404) naming the loaded models, ``NoModelLoadedError`` when none is.
        """
        # Without the lock (a generation holds it for its whole length): the job checks again when it runs.
        loaded = self.find(name)
        if loaded is not None:
            # One model at a time: the request follows whatever is loaded when its turn comes, as before.
            # No name: whichever model is main when the job's turn comes.
            return None if (not name or (loaded is self.current and not self.budget_bytes)) else loaded.name
        folder = self.folder_name(name) if name else None
        if folder is not None and self.load_on_demand:
            return folder
        raise self._not_loaded(name, folder)

    def _not_loaded(self, name: str | None, folder: str | None) -> WebUIError:
        if not self._loaded:
            if folder is not None:
                return NoModelLoadedError(
                    f"{folder} is not loaded, and no model is. Load it in the Model tab or with POST "
                    "/v1/internal/model/load, or start the server with --load-on-demand.")
            return NoModelLoadedError()
        loaded = ", ".join(m.name for m in self.loaded_models())
        if folder is not None:
            return ModelNotFoundError(
                f"The model {folder} is not loaded. Loaded: {loaded}. Load it in the Model tab or with POST "
                "/v1/internal/model/load, or start the server with --load-on-demand to load it when asked for.",
                key="error.model_not_loaded", name=folder, loaded=loaded)
        return ModelNotFoundError(
            f"No model called {name!r} is loaded. Loaded: {loaded}. GET /v1/models lists them.",
            key="error.model_unknown", name=repr(name), loaded=loaded)

    @contextmanager
    def use(self, name: str | None = None) -> Iterator[LoadedModel]:
        """Hold the model a request for ``name`` goes to (None: the main one) for one generation.

        A model in the folder that is not loaded is loaded first when ``load_on_demand`` is on.
        """
        with self._lock:
            loaded = self.find(name)
            if loaded is None:
                folder = self.folder_name(name) if name else None
                if folder is None or not self.load_on_demand:
                    raise self._not_loaded(name, folder)
                saved_loader, options = self.options_for(folder)
                log.info("Loading %s for a request that asked for it", folder)
                loaded = self.load(folder, saved_loader, options, main=False)
            loaded.last_used = time.time()
            loaded.requests += 1
            try:
                yield loaded
            finally:
                loaded.last_used = time.time()

    # ----- idle models -----------------------------------------------------------------------
    def next_expiry(self, now: float | None = None) -> float | None:
        """Seconds until the next idle model is due to be unloaded (None: none will be)."""
        if self.ttl_seconds <= 0:
            return None
        now = time.time() if now is None else now
        due = [m.last_used + self.ttl_seconds - now for m in self._loaded.values() if m.name != self._main]
        return max(0.0, min(due)) if due else None

    def unload_idle(self, now: float | None = None) -> list[str]:
        """Unload the models other than the main one that have had no request for ``ttl_seconds``."""
        if self.ttl_seconds <= 0:
            return []
        now = time.time() if now is None else now
        gone = []
        with self._lock:
            for loaded in list(self._loaded.values()):
                if loaded.name != self._main and now - loaded.last_used >= self.ttl_seconds:
                    log.info("Unloading %s: no request for %.0f s", loaded.name, now - loaded.last_used)
                    self._close(loaded.name)
                    gone.append(loaded.name)
        return gone

    def _close(self, name: str) -> None:
        loaded = self._loaded.pop(name, None)
        if self._main == name:
            # the most recently used of the others becomes the main model
            rest = sorted(self._loaded.values(), key=lambda m: m.last_used)
            self._main = rest[-1].name if rest else None
        if loaded is not None:
            loaded.backend.close()
            del loaded
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
        self._loaded[previous.name] = LoadedModel(previous.name, previous.loader, previous.options, backend,
                                                  previous.load_seconds, path=previous.path,
                                                  memory_bytes=previous.memory_bytes)
        self._main = previous.name

    def _with_restore_note(self, exc: WebUIError, previous: LoadedModel | None) -> WebUIError:
        if previous is None:
            return exc
        if self.current is not None and self.current.name == previous.name:
            exc.add_sentence(f"{previous.name} is loaded again.", "error.note_restored", name=previous.name)
        else:
            exc.add_sentence(f"{previous.name} could not be loaded again either; no model is loaded.",
                         "error.note_not_restored", name=previous.name)
        return exc
