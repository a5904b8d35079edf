"""Downloads from the Hugging Face Hub (or a mirror) into the models folder.

Everything on the wire goes through ``huggingface_hub``: the file list
(``HfApi.list_repo_tree``), each file's metadata (``get_hf_file_metadata``, a
HEAD request) and the bytes (``file_download.http_get``, which retries and
resumes by itself when a connection drops). What we add is what a person
downloading a 5 GB file on a laptop needs:

* **Nothing half-done is ever listed.** Files are written to a hidden staging
  folder ``models/.downloads/<target>/`` as ``<file>.partial``; only when every
  file is complete and verified is the model moved into place (one rename).
* **Resume.** A cancelled or interrupted download keeps its ``.partial`` files;
  the next attempt asks the server only for the missing bytes (HTTP Range).
* **Verification.** Large (LFS) files carry a sha256 on the hub; it is checked
  before the file is kept. A mismatch deletes the file and says so.
* **Progress and Cancel.** A callback gets bytes done / total / speed / ETA;
  a ``threading.Event`` stops the transfer within one chunk.
* **Clear errors** for 404, 401/gated, network down, and a full disk.
* **Vision projectors.** A GGUF repository of a vision model also holds its
  projector (``mmproj*.gguf``). It is never offered as a model; it goes with
  the chosen quantisation (unless the user unticks it), and both land in one
  folder named after the model, where the llama.cpp loader finds it (``auto``).

``HF_ENDPOINT`` (mirrors) and ``HF_TOKEN`` (gated repos) are read at call time.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import httpx2
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub import errors as hf_errors
from huggingface_hub.file_download import http_get
from huggingface_hub.utils import build_hf_headers, get_session

from webui.catalogue import Keyed
from webui.errors import DownloadCancelled, DownloadError, InvalidNameError
from webui.loaders.mtmd import projector_named
from webui.storage import safe_name, sha256_file
from webui.units import human_size

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
STAGING_DIR = ".downloads"
PARTIAL = ".partial"

#: Files of a transformers model folder that are fetched besides the weights.
CONFIG_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "*.safetensors.index.json",
)
SAFE_WEIGHTS = ("*.safetensors",)
#: Pickle weights run code when loaded: fetched only when the user asks.
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")

_QUANT_RE = re.compile(r"(?:^|[-_.])((?:I?Q\d(?:_[A-Z0-9]+)*)|BF16|F16|FP16|F32|FP32)(?=[-_.]|$)", re.IGNORECASE)
_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# ----- what the user typed ---------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """A repository (optionally one file in it) or a plain file URL."""

    repo_id: str | None = None
    revision: str = "main"
    filename: str | None = None
    endpoint: str = DEFAULT_ENDPOINT
    url: str | None = None  # a direct link that is not a hub repository path

    @property
    def label(self) -> str:
        if self.url:
            return self.url
        rev = "" if self.revision == "main" else f":{self.revision}"
        return f"{self.repo_id}{rev}" + (f" / {self.filename}" if self.filename else "")


def hub_endpoint() -> str:
    """The hub to talk to: ``$HF_ENDPOINT`` (a mirror) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_token(explicit: str | None = None) -> str | None:
    """The token for gated/private repos: the one typed in, else ``$HF_TOKEN``."""
    return (explicit or "").strip() or os.environ.get("HF_TOKEN") or None


def parse_source(text: str) -> Source:
    """Understand ``user/repo``, ``user/repo:branch``, a hub URL (repo, tree, blob or resolve) or a file URL."""
    text = (text or "").strip()
    if not text:
        raise DownloadError(
            "Type a repository such as 'HuggingFaceTB/SmolLM2-135M-Instruct-GGUF', or paste its URL.",
            key="error.download_no_repo",
        )
    if text.startswith(("http://", "https://")):
        parsed = urlparse(text)
        if not parsed.netloc:
            raise DownloadError(f"{text!r} is not a valid URL.")
        endpoint = f"{parsed.scheme}://{parsed.netloc}"
        parts = [unquote(p) for p in parsed.path.strip("/").split("/") if p]
        if parts[:1] == ["models"]:
            parts = parts[1:]
        looks_like_file = bool(parts) and parts[-1].lower().endswith((".gguf", ".safetensors", ".bin"))
        if len(parts) >= 2 and len(parts) != 3 and not (len(parts) == 2 and looks_like_file):
            owner, name, rest = parts[0], parts[1], parts[2:]
            if not rest:
                return _checked(Source(f"{owner}/{name}", "main", None, endpoint))
            if rest[0] == "tree" and len(rest) >= 2:
                return _checked(Source(f"{owner}/{name}", rest[1], None, endpoint))
            if rest[0] in ("blob", "resolve") and len(rest) >= 3:
                return _checked(Source(f"{owner}/{name}", rest[1], "/".join(rest[2:]), endpoint))
        if parts and "." in parts[-1]:
            return Source(url=text, filename=parts[-1], endpoint=endpoint)
        raise DownloadError(
            f"Cannot tell which repository or file {text!r} points to. Paste a link like "
            "https://huggingface.co/USER/REPO or .../resolve/main/FILE.gguf."
        )
    repo, _, revision = text.partition(":")
    return _checked(Source(repo.strip().strip("/"), revision.strip() or "main", None, hub_endpoint()))


def _checked(source: Source) -> Source:
    if not source.repo_id or not _REPO_RE.match(source.repo_id) or ".." in source.repo_id:
        raise DownloadError(
            f"{source.repo_id!r} is not a repository name; it should look like USER/REPO.",
            key="error.download_bad_repo",
            repo=repr(source.repo_id),
        )
    return source


# ----- what the repository holds ---------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class Choice:
    """One thing the user can download from a repository."""

    key: str
    label: str
    files: tuple[RemoteFile, ...]
    target: str  # name in the models folder
    is_folder: bool
    #: The vision projector (mmproj) that goes with this GGUF, when the repository has one. It is
    #: downloaded when it is in ``files`` (see :meth:`with_projector`).
    projector: RemoteFile | None = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def projector_included(self) -> bool:
        return self.projector is not None and self.projector in self.files

    def with_projector(self, include: bool) -> Choice:
        """This GGUF with its projector, both in a folder named after the model (the loader's ``auto``
        takes the projector next to a model; loose in a models folder shared with other models, it is
        taken only when its name says whose it is, and ``mmproj-F16.gguf`` says nothing), or without it
        (the model alone, as when the repository has no projector)."""
        if self.projector is None:
            return self
        model = tuple(f for f in self.files if f != self.projector)
        split = len(model) > 1 or bool(_SPLIT_RE.search(model[0].path))
        base = Path(self.key).name
        folder = safe_name(base[:-5], what="model name")
        if include:
            return replace(self, files=(*model, self.projector), target=folder, is_folder=True)
        return replace(
            self, files=model, target=folder if split else safe_name(base, what="model name"), is_folder=split
        )


@dataclass
class Listing:
    source: Source
    files: list[RemoteFile]
    kind: Literal["gguf", "transformers", "other"]
    choices: list[Choice]
    note: str = ""


def ram_hint(file_size: int, total_ram: int | None = None) -> str:
    """Rough RAM needed to run a GGUF of ``file_size`` bytes at a 4k context, and whether it fits here."""
    need = human_size(file_size * 1.1 + 300e6)  # weights + KV cache and buffers for a few thousand tokens
    if not total_ram:
        return Keyed(f"RAM ≈ {need}", "download.ram", need=need)
    if file_size * 1.1 + 300e6 < total_ram * 0.8:
        return Keyed(f"RAM ≈ {need} (fits)", "download.ram_fits", need=need)
    total = human_size(total_ram)
    return Keyed(f"RAM ≈ {need} (more than this machine's {total})", "download.ram_too_big", need=need, total=total)


def _machine_ram() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # pragma: no cover - psutil is a dependency; be safe anyway
        return None


def quant_of(filename: str) -> str:
    stem = _SPLIT_RE.sub(".gguf", Path(filename).name)
    stem = stem[:-5] if stem.lower().endswith(".gguf") else stem
    matches = _QUANT_RE.findall(stem)
    return matches[-1].upper() if matches else stem


def _safe_relpath(path: str) -> str:
    """A repository path made safe to create under our folder (the server's listing is untrusted)."""
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if not parts:
        raise DownloadError(f"The server listed an empty file name ({path!r}).")
    try:
        return "/".join(safe_name(p, what="file name from the server") for p in parts)
    except InvalidNameError as exc:
        raise DownloadError(f"Refusing the file {path!r} listed by the server: {exc.message}") from exc


def folder_name(source: Source) -> str:
    """text-generation-webui's naming: ``owner_repo`` (plus ``_branch`` when not main)."""
    assert source.repo_id
    name = source.repo_id.replace("/", "_")
    if source.revision != "main":
        name += f"_{source.revision}"
    return safe_name(name.replace(":", "_"), what="model folder name")


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    base = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(base.lower(), p.lower()) for p in patterns)


def matching_projector(model_path: str, projectors: list[RemoteFile]) -> RemoteFile | None:
    """The projector for the GGUF at ``model_path`` in a repository: among those in its folder (else at the
    top of the repository), the one of the same quantisation (Q8_0 with Q8_0), else F16 (the precision
    projectors are usually published in, which every backend runs), else the first."""
    folder = model_path.rpartition("/")[0]
    nearby = [p for p in projectors if p.path.rpartition("/")[0] == folder] or [
        p for p in projectors if "/" not in p.path
    ]
    quant = quant_of(model_path)
    return min(
        nearby, key=lambda p: (quant_of(p.path) != quant, quant_of(p.path) not in ("F16", "FP16"), p.path), default=None
    )


def plan_choices(source: Source, files: list[RemoteFile], allow_pickle: bool = False) -> Listing:
    """Group a repository's files into the downloads a user can pick."""
    ram = _machine_ram()
    ggufs = [f for f in files if f.path.lower().endswith(".gguf")]
    # A vision model's projector is not a model of its own: it goes with the quantisation picked.
    projectors = [f for f in ggufs if projector_named(f.path)]
    ggufs = [f for f in ggufs if not projector_named(f.path)]
    if source.filename:
        picked = [f for f in files if f.path == source.filename]
        if not picked:
            raise DownloadError(f"{source.repo_id} has no file called {source.filename!r}.")
        ggufs = picked if picked[0].path.lower().endswith(".gguf") and picked[0] not in projectors else []
        if not ggufs:
            f = picked[0]
            target = safe_name(Path(f.path).name, what="file name")
            return Listing(
                source, files, "other", [Choice(f.path, f"{f.path} ({human_size(f.size)})", (f,), target, False)]
            )
    if ggufs:
        groups: dict[str, list[RemoteFile]] = {}
        for f in ggufs:
            key = _SPLIT_RE.sub(".gguf", f.path)
            groups.setdefault(key, []).append(f)
        choices = []
        for key, group in groups.items():
            group.sort(key=lambda f: f.path)
            size = sum(f.size for f in group)
            split = len(group) > 1 or bool(_SPLIT_RE.search(group[0].path))
            base = Path(key).name
            fields = {"quant": quant_of(key), "name": base, "size": human_size(size), "ram": ram_hint(size, ram)}
            label = Keyed(
                f"{fields['quant']} · {base} · {fields['size']} · {fields['ram']}", "download.choice_gguf", **fields
            )
            if split:
                label = Keyed(f"{label} · {len(group)} parts", "download.choice_gguf_parts", parts=len(group), **fields)
            target = safe_name(base[:-5] if split else base, what="model name")
            choice = Choice(key, label, tuple(group), target, split, matching_projector(group[0].path, projectors))
            choices.append(choice.with_projector(True))
        choices.sort(key=lambda c: c.size)
        pick_note = Keyed(
            "Pick one quantisation: smaller files are faster and need less RAM; Q4_K_M is a good default.",
            "download.note_pick",
        )
        if any(c.projector for c in choices):
            pick_note = Keyed(
                f"{pick_note} This is a vision model: its projector (mmproj) comes with it, in one folder, so it can "
                "see images.",
                "download.note_pick_vision",
            )
        return Listing(source, files, "gguf", choices, pick_note)
    weights = [f for f in files if _matches(f.path, SAFE_WEIGHTS)]
    pickles = [f for f in files if _matches(f.path, PICKLE_WEIGHTS)]
    configs = [f for f in files if _matches(f.path, CONFIG_PATTERNS)]
    has_config = any(f.path == "config.json" for f in files)
    if has_config and (weights or pickles):
        note: str = ""
        if not weights:
            if not allow_pickle:
                raise DownloadError(
                    f"{source.repo_id} has only pickle weights ({', '.join(f.path for f in pickles[:3])}). Pickle "
                    "files can run code on your computer when loaded. Tick 'allow .bin' only if you trust this "
                    "repository, or look for a safetensors or GGUF version."
                )
            weights = pickles
            note = Keyed("Pickle (.bin) weights: only load them if you trust this repository.", "download.note_pickle")
        elif pickles:
            note = Keyed(
                f"Skipping {len(pickles)} pickle file(s); the safetensors weights are used instead.",
                "download.note_skip_pickles",
                n=len(pickles),
            )
        chosen = tuple(sorted({f.path: f for f in configs + weights}.values(), key=lambda f: f.path))
        size = sum(f.size for f in chosen)
        label = Keyed(
            f"transformers folder · {len(chosen)} files · {human_size(size)}",
            "download.choice_hf",
            n=len(chosen),
            size=human_size(size),
        )
        return Listing(
            source, files, "transformers", [Choice("transformers", label, chosen, folder_name(source), True)], note
        )
    raise DownloadError(
        f"{source.label} has no .gguf file and no transformers model (config.json with "
        ".safetensors weights); there is nothing here this app can load."
    )


def list_files(source: Source, token: str | None = None, allow_pickle: bool = False) -> Listing:
    """The repository's files with sizes, grouped into choices. Raises ``DownloadError``."""
    if source.url:
        meta = _metadata(source.url, token, source.url)
        f = RemoteFile(source.filename or "download", meta.size or 0, _sha256_of_etag(meta.etag))
        target = safe_name(Path(f.path).name, what="file name")
        return Listing(source, [f], "other", [Choice(f.path, f"{f.path} ({human_size(f.size)})", (f,), target, False)])
    _check_reachable(source)
    api = HfApi(endpoint=source.endpoint, token=hub_token(token))
    try:
        entries = list(api.list_repo_tree(source.repo_id, revision=source.revision, recursive=True))
    except Exception as exc:
        raise _explain(exc, source) from exc
    files = [
        RemoteFile(e.path, int(e.size or 0), e.lfs.sha256 if getattr(e, "lfs", None) else None)
        for e in entries
        if hasattr(e, "size")
    ]
    files.sort(key=lambda f: f.path)
    return plan_choices(source, files, allow_pickle)


def _check_reachable(source: Source) -> None:
    """Fail in seconds when the hub cannot be reached (the client's own retries take about 25 s)."""
    try:
        get_session().head(source.endpoint, timeout=10)
    except (httpx2.ConnectError, httpx2.TimeoutException, httpx2.NetworkError) as exc:
        raise _explain(exc, source) from exc


# ----- the transfer --------------------------------------------------------------------
@dataclass
class Progress:
    done: int = 0
    total: int = 0
    file: str = ""
    started: float = field(default_factory=time.monotonic)
    resumed_from: int = 0

    @property
    def speed(self) -> float:
        elapsed = time.monotonic() - self.started
        return (self.done - self.resumed_from) / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        speed = self.speed
        return (self.total - self.done) / speed if speed > 0 and self.total else None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def text(self) -> str:
        eta = self.eta
        eta_text = "" if eta is None else f", about {duration(eta)} left"
        return (
            f"{human_size(self.done)} of {human_size(self.total)} ({self.fraction:.0%}), "
            f"{human_size(self.speed)}/s{eta_text}"
        )


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds // 60 % 60} min"


ProgressCallback = Callable[[Progress], None]


def _progress_bar_class(progress: Progress, report: ProgressCallback, cancel: threading.Event) -> type:
    """A stand-in for tqdm that ``http_get`` drives: it counts bytes, reports, and stops on Cancel."""

    class Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._last = 0.0

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def update(self, n: int = 1) -> None:
            progress.done += n
            if cancel.is_set():
                raise DownloadCancelled(
                    "Download cancelled. The part already downloaded is kept; download again to resume.",
                    key="error.download_cancelled",
                )
            now = time.monotonic()
            if now - self._last >= 0.2:
                self._last = now
                report(progress)

        def close(self) -> None:
            return None

    return Bar


def _sha256_of_etag(etag: str | None) -> str | None:
    etag = (etag or "").strip('"').lower()
    return etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None


def _metadata(url: str, token: str | None, label: str) -> Any:
    try:
        return get_hf_file_metadata(url, token=hub_token(token))
    except Exception as exc:
        raise _explain(exc, label) from exc


def _explain(exc: BaseException, what: Source | str) -> DownloadError:
    """Turn a hub/network failure into a message a person can act on."""
    label = what.label if isinstance(what, Source) else what
    endpoint = what.endpoint if isinstance(what, Source) else hub_endpoint()
    if isinstance(exc, DownloadError):
        return exc
    if isinstance(exc, hf_errors.GatedRepoError):
        return DownloadError(
            f"{label} is a gated repository: accept its licence on its hub page, then set "
            "HF_TOKEN (or paste a token) with a token of that account.",
            key="error.download_gated",
            label=label,
        )
    if (
        isinstance(exc, hf_errors.HfHubHTTPError)
        and exc.response is not None
        and exc.response.status_code == 401
        and "Invalid credentials" in (exc.response.headers.get("X-Error-Message") or "")
    ):
        return DownloadError(
            f"The hub rejected the token (401) for {label}. Check HF_TOKEN or the token you pasted.",
            key="error.download_bad_token",
            label=label,
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        status = exc.response.status_code if exc.response is not None else 404
        return DownloadError(
            f"Repository {label} was not found on {endpoint} ({status}). Check the name; if it is "
            "private or gated, set HF_TOKEN or paste a token.",
            key="error.download_repo_not_found",
            label=label,
            endpoint=endpoint,
            status=status,
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return DownloadError(f"{label}: that branch or revision does not exist.")
    if isinstance(exc, hf_errors.EntryNotFoundError):
        return DownloadError(f"{label}: that file does not exist in the repository (404).")
    if isinstance(exc, hf_errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return DownloadError(f"The hub answered {status} for {label}: {str(exc).splitlines()[0]}")
    if isinstance(
        exc,
        (
            httpx2.ConnectError,
            httpx2.TimeoutException,
            httpx2.NetworkError,
            httpx2.RemoteProtocolError,
            hf_errors.LocalEntryNotFoundError,
            ConnectionError,
        ),
    ):
        return DownloadError(
            f"Cannot reach {endpoint} ({type(exc).__name__}). Check your internet connection, "
            "or set HF_ENDPOINT to a mirror you can reach. Downloaded parts are kept for resume.",
            key="error.download_offline",
            endpoint=endpoint,
            kind=type(exc).__name__,
        )
    if isinstance(exc, OSError) and exc.errno == 28:
        return DownloadError(
            "The disk is full. Free some space and download again; the part already downloaded "
            "is kept and the download resumes.",
            key="error.disk_full",
        )
    return DownloadError(
        f"Download of {label} failed: {type(exc).__name__}: {exc}",
        key="error.download_failed",
        label=label,
        detail=f"{type(exc).__name__}: {exc}",
    )


def staging_dir(models_dir: Path, choice: Choice) -> Path:
    return Path(models_dir) / STAGING_DIR / choice.target


def local_relpath(choice: Choice, f: RemoteFile) -> str:
    """Where ``f`` goes inside the download's folder. The files of a GGUF folder (split parts, the
    projector) sit side by side, whatever folders they had in the repository: llama.cpp finds the other
    parts next to the first, the loader finds the projector next to the model, and the model list looks
    only at the folder's top level."""
    if choice.is_folder and choice.key.lower().endswith(".gguf"):
        return safe_name(f.path.rsplit("/", 1)[-1], what="file name from the server")
    return _safe_relpath(f.path)


def partial_bytes(models_dir: Path, choice: Choice) -> int:
    """Bytes already on disk from an earlier, interrupted attempt."""
    stage = staging_dir(models_dir, choice)
    total = 0
    for f in choice.files:
        rel = local_relpath(choice, f)
        done, part = stage / rel, stage / (rel + PARTIAL)
        total += done.stat().st_size if done.is_file() else (part.stat().st_size if part.is_file() else 0)
    return total


def download(
    listing: Listing,
    choice: Choice,
    models_dir: Path,
    *,
    token: str | None = None,
    report: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Fetch ``choice`` into ``models_dir``; returns the model's path once it is complete and verified."""
    models_dir = Path(models_dir)
    report = report or (lambda p: None)
    cancel = cancel or threading.Event()
    final = models_dir / choice.target
    if final.exists():
        raise DownloadError(f"{choice.target} is already in the models folder. Delete it first to download it again.")
    stage = staging_dir(models_dir, choice)
    already = partial_bytes(models_dir, choice)
    remaining = choice.size - already
    models_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(models_dir).free
    if remaining > free:
        raise DownloadError(
            f"Not enough disk space: {choice.target} needs {human_size(remaining)} more but only "
            f"{human_size(free)} is free in {models_dir}. Nothing was downloaded."
        )
    stage.mkdir(parents=True, exist_ok=True)
    progress = Progress(done=already, total=choice.size, resumed_from=already)
    bar = _progress_bar_class(progress, report, cancel)
    headers = build_hf_headers(token=hub_token(token))
    report(progress)
    try:
        _fetch_all(listing, choice, stage, progress, bar, headers, token)
    finally:
        _remove_empty_dirs(stage)
        _remove_empty_dirs(models_dir / STAGING_DIR)
    # Every file is complete: move the model into place in one step.
    if choice.is_folder:
        os.replace(stage, final)
    else:
        os.replace(stage / local_relpath(choice, choice.files[0]), final)
        shutil.rmtree(stage, ignore_errors=True)
    _remove_empty_dirs(models_dir / STAGING_DIR)
    progress.done = progress.total
    report(progress)
    log.info("Downloaded %s to %s", choice.target, final)
    return final


def _fetch_all(
    listing: Listing,
    choice: Choice,
    stage: Path,
    progress: Progress,
    bar: type,
    headers: dict[str, str],
    token: str | None,
) -> None:
    source = listing.source
    for f in choice.files:
        rel = local_relpath(choice, f)
        done_path, part = stage / rel, stage / (rel + PARTIAL)
        if done_path.is_file():
            continue
        progress.file = f.path
        part.parent.mkdir(parents=True, exist_ok=True)
        url = source.url or hf_hub_url(source.repo_id, f.path, revision=source.revision, endpoint=source.endpoint)
        meta = _metadata(url, token, f"{source.label} / {f.path}")
        size = meta.size if meta.size is not None else f.size
        expected = f.sha256 or _sha256_of_etag(meta.etag)
        resume = part.stat().st_size if part.is_file() else 0
        if size is not None and resume > size:  # a different file than last time: start over
            part.unlink()
            progress.done -= resume
            resume = 0
        try:
            with open(part, "ab") as out:
                http_get(
                    meta.location or url,
                    out,
                    resume_size=resume,
                    headers=headers,
                    displayed_filename=f.path,
                    tqdm_class=bar,
                )
                out.flush()
                os.fsync(out.fileno())
        except DownloadCancelled:
            raise
        except Exception as exc:
            raise _explain(exc, source) from exc
        # The size is checked here rather than by http_get (whose error is a plain OSError told apart
        # only by its wording).
        if size is not None and part.stat().st_size != size:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{f.path}: the server sent a different number of bytes than it announced. "
                "The partial file was removed; try again."
            )
        if expected:
            got = sha256_file(part)
            if got != expected:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"{f.path}: checksum mismatch (sha256 {got[:12]}…, the hub says "
                    f"{expected[:12]}…). The corrupt file was deleted; nothing was installed."
                )
        os.replace(part, done_path)


def _remove_empty_dirs(folder: Path) -> None:
    """Remove ``folder`` and its sub-folders if they hold no file (kept parts stay for resume)."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


# ----- background jobs for the UI ------------------------------------------------------
@dataclass
class DownloadJob:
    id: str
    choice: Choice
    progress: Progress = field(default_factory=Progress)
    state: Literal["running", "done", "failed", "cancelled"] = "running"
    message: str = ""
    #: why it failed or was cancelled (its key lets the UI show it in the page's language)
    error: DownloadError | None = None
    path: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def status_text(self) -> str:
        if self.state == "running":
            return f"Downloading {self.choice.target}: {self.progress.text()}"
        return self.message


class DownloadManager:
    """Runs downloads in background threads, so a page reload or a closed tab does not stop them."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)
        self._jobs: dict[str, DownloadJob] = {}
        self._lock = threading.Lock()

    def start(self, listing: Listing, choice: Choice, token: str | None = None) -> DownloadJob:
        with self._lock:
            for job in self._jobs.values():
                if job.state == "running" and job.choice.target == choice.target:
                    raise DownloadError(f"{choice.target} is already being downloaded.")
            job = DownloadJob(uuid.uuid4().hex, choice, Progress(total=choice.size))
            self._jobs[job.id] = job

        def run() -> None:
            def report(p: Progress) -> None:
                job.progress = p

            try:
                job.path = download(listing, choice, self.models_dir, token=token, report=report, cancel=job.cancel)
                job.state, job.message = (
                    "done",
                    f"Downloaded **{choice.target}** ({human_size(choice.size)}). It is in the model list now.",
                )
            except DownloadCancelled as exc:
                job.state, job.message, job.error = "cancelled", exc.message, exc
            except DownloadError as exc:
                job.state, job.message, job.error = "failed", exc.message, exc
            except Exception as exc:  # a bug: report it, never leave the job "running"
                log.exception("Download of %s failed", choice.target)
                job.error = DownloadError(
                    f"Download failed: {type(exc).__name__}: {exc}",
                    key="error.download_failed",
                    label=choice.target,
                    detail=f"{type(exc).__name__}: {exc}",
                )
                job.state, job.message = "failed", job.error.message

        job.thread = threading.Thread(target=run, name=f"download-{choice.target}", daemon=True)
        job.thread.start()
        return job

    def get(self, job_id: str | None) -> DownloadJob | None:
        return self._jobs.get(job_id or "")

    def cancel(self, job_id: str | None) -> bool:
        job = self.get(job_id)
        if job is None or job.state != "running":
            return False
        job.cancel.set()
        return True
