"""Images on the llama.cpp loader: the vision projector (``mmproj``) and llama.cpp's libmtmd.

A llama.cpp vision model is two GGUF files: the language model and its projector (a vision
encoder plus the layers that map its output into the model's embedding space). libmtmd (shipped
in llama-cpp-python as ``llama_cpp.mtmd_cpp``) loads the projector against the loaded model,
turns a prompt whose images are marked with ``IMAGE_MARKER`` into chunks (runs of text tokens,
and per image one or more runs of embeddings wrapped in the model's own image tokens), and
decodes an image chunk into the model's context at a given position.

This module owns that plumbing; ``llamacpp.py`` decides what to evaluate and generates.

- :func:`find_projectors` / :func:`resolve_projector`: which projector file goes with a model
  (the ``mmproj`` load option), and :func:`is_projector` so a projector is never loaded as a model.
- :class:`Projector`: a loaded projector. :meth:`Projector.tokenize` returns a
  :class:`VisionPrompt`, whose :attr:`VisionPrompt.ids` has one entry per prompt position: the
  text tokens, and for each position an image fills a *placeholder*, a negative number made from
  the image's bytes. Negative ids are never real tokens, so the loader's prefix reuse (which
  compares ``Llama.input_ids`` with the next prompt's tokens) never mistakes an image's cache
  entries for text, and the same image at the same place in a longer chat matches itself, so a
  chat about a picture does not encode the picture again on every turn.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import os
import re
import struct
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webui.attachments.types import IMAGE_MARKER, ImageInput
from webui.errors import AttachmentError, GenerationError, ModelInfoError, ModelLoadError

#: ``general.type`` of a projector file, and the architecture every llama.cpp projector declares.
PROJECTOR_TYPE = "mmproj"
PROJECTOR_ARCHITECTURE = "clip"
_PARTIAL = (".partial", ".part", ".tmp", ".incomplete", ".download")
_PRECISION_RE = re.compile(r"(?:^|[-_.])(BF16|F16|FP16|F32|FP32|I?Q\d(?:_[A-Z0-9]+)*)(?=[-_.]|$)", re.IGNORECASE)
_MMPROJ_RE = re.compile(r"(?i)[-_.]?mmproj[-_.]?")
_SPLIT_RE = re.compile(r"-\d{5}-of-\d{5}(?=\.gguf$)", re.IGNORECASE)


# ----- which projector goes with a model ------------------------------------------------------
def projector_named(name: str) -> bool:
    """``name`` follows the usual projector naming (``mmproj-X.gguf``, ``X-mmproj-f16.gguf``)."""
    lower = name.lower()
    return lower.endswith(".gguf") and "mmproj" in lower


def projector_not_a_model(path: Path) -> ModelInfoError:
    """The error for a projector picked or read as if it were a model."""
    return ModelInfoError(
        f"{path.name} is a vision projector (mmproj), not a model: it cannot be loaded on its own. Load the model "
        "next to it; the projector is loaded with it (Model tab: Vision projector).",
        key="error.projector_not_a_model",
        name=path.name,
    )


def is_projector(path: Path) -> bool:
    """``path`` is a vision projector, not a model: named ``*mmproj*.gguf``, or its header says so
    (``general.type`` = ``mmproj``, or architecture ``clip`` as older llava projectors have)."""
    path = Path(path)
    if projector_named(path.name):
        return True
    general = gguf_general_keys(path)
    return general.get("general.type") == PROJECTOR_TYPE or general.get("general.architecture") == (
        PROJECTOR_ARCHITECTURE
    )


def find_projectors(model_path: Path) -> list[Path]:
    """The projector files in the folder of the model at ``model_path`` (a .gguf file or a model folder)."""
    model_path = Path(model_path)
    return [p for p in _ggufs(_folder(model_path)) if p != model_path and is_projector(p)]


def _folder(model_path: Path) -> Path:
    return model_path if model_path.is_dir() else model_path.parent


def resolve_projector(model_path: Path, choice: str) -> tuple[Path | None, str]:
    """The projector to load with the model at ``model_path`` for the ``mmproj`` option, and a note.

    ``"none"``: none. ``""`` (auto): the projector in the model's folder that belongs to it (see
    :func:`_pick`); none when there is none, or when several could be it and nothing tells them
    apart (the note then says so: a wrong projector fails to load or, worse, gives nonsense). A
    file name: that file in the model's folder. An absolute path: that file, inside the model's
    folder or the folder holding it (the models folder when the model has a folder of its own).
    A named file that is missing or is not a projector raises ``ModelLoadError``.
    """
    model_path = Path(model_path)
    choice = (choice or "").strip()
    folder = _folder(model_path)
    if choice.lower() == "none":
        return None, ""
    if not choice:
        return _pick(model_path, find_projectors(model_path))
    given = Path(choice).expanduser()
    if given.is_absolute():
        # Compared as written, not with links resolved: models are often links into a download folder.
        target = Path(os.path.normpath(given))
        here = Path(os.path.normpath(folder.absolute()))
        if target.parent not in (here, here.parent):
            raise ModelLoadError(
                f"The vision projector {given} is not in the model's folder ({folder}) or the folder holding it. "
                "Put it next to the model and pick it by name."
            )
    elif given.name != choice or choice in (".", ".."):
        raise ModelLoadError(
            f"The vision projector {choice!r} must be a file name in the model's folder ({folder}), "
            "'none', or empty to find it automatically."
        )
    else:
        target = folder / choice
    if not target.is_file():
        raise ModelLoadError(
            f"The vision projector {choice} is not in the model's folder ({folder}). Pick one of "
            f"{', '.join(p.name for p in find_projectors(model_path)) or 'none there'}, or leave it empty (auto)."
        )
    if not is_projector(target):
        raise ModelLoadError(
            f"{target.name} is not a vision projector (an mmproj GGUF file). Pick the projector made for "
            f"{model_path.name}, or 'none'."
        )
    return target, ""


def _pick(model_path: Path, projectors: list[Path]) -> tuple[Path | None, str]:
    """Auto choice: with one model in the folder, its projector (the best precision when there are
    several); with several models, the projector whose name is the model's name. No guessing beyond that."""
    if not projectors:
        return None, ""
    # the parts of a split model (name-00001-of-00003.gguf) are one model
    models = {_SPLIT_RE.sub("", p.name) for p in model_ggufs(_folder(model_path))}
    model_base = _base(model_path.name)
    if len(models) <= 1:
        candidates = projectors
    else:
        candidates = [p for p in projectors if _belongs(_base(p.name), model_base)]
        candidates.sort(key=lambda p: -len(_base(p.name)))
        candidates = [p for p in candidates if len(_base(p.name)) == len(_base(candidates[0].name))]
    if not candidates:
        names = ", ".join(p.name for p in projectors)
        return None, (
            f"No vision: the folder holds several models and no projector named like {model_path.name} "
            f"({names}). Pick one in the Model tab (vision projector)."
        )
    tag = _precision(model_path.name)
    best = min(candidates, key=lambda p: (_precision(p.name) != tag, _precision(p.name) not in ("F16", "FP16"), p.name))
    return best, ""


def model_ggufs(folder: Path) -> list[Path]:
    """The model's own .gguf files in a folder (every part of a split model), projectors left out, sorted."""
    return [p for p in _ggufs(Path(folder)) if not is_projector(p)]


def _ggufs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.glob("*.gguf")
        if not p.name.startswith(".") and not p.name.lower().endswith(_PARTIAL) and p.is_file()
    )


def _base(name: str) -> str:
    """A file's name without ``.gguf``, ``mmproj`` and precision tags, lowercased, for comparing."""
    stem = name[:-5] if name.lower().endswith(".gguf") else name
    stem = _MMPROJ_RE.sub("-", stem, count=1)
    stem = _PRECISION_RE.sub("", stem)
    return re.sub(r"[-_. ]+", "-", stem).strip("-").lower()


def _belongs(projector_base: str, model_base: str) -> bool:
    """The projector's name, without its tags, is the model's name or the start of it (at a word break).
    ``mmproj-model-f16`` ("model") says nothing, so it never matches a model in a shared folder."""
    if len(projector_base) < 3 or projector_base == "model":
        return False
    return model_base == projector_base or model_base.startswith(projector_base + "-")


def _precision(name: str) -> str:
    found = _PRECISION_RE.findall(name[:-5] if name.lower().endswith(".gguf") else name)
    return found[-1].upper() if found else ""


def gguf_general_keys(path: Path) -> dict[str, Any]:
    """The ``general.*`` string keys at the start of a GGUF header (architecture, type, name).

    Read until the first other key, which is in the first few hundred bytes: cheap even for a model
    file whose tokenizer arrays are megabytes. Not a GGUF, unreadable or odd: empty.
    """
    found: dict[str, Any] = {}
    try:
        size = Path(path).stat().st_size
        if size < 24:
            return found
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if bytes(buf[:4]) != b"GGUF" or struct.unpack_from("<I", buf, 4)[0] not in (2, 3):
                return found
            n_kv = struct.unpack_from("<Q", buf, 16)[0]
            pos = 24
            for _ in range(min(n_kv, 64)):
                (n,) = struct.unpack_from("<Q", buf, pos)
                if n > 256 or pos + 8 + n + 4 > size:
                    break
                key = bytes(buf[pos + 8 : pos + 8 + n]).decode("utf-8", "replace")
                pos += 8 + n
                (vtype,) = struct.unpack_from("<I", buf, pos)
                pos += 4
                if not key.startswith("general.") or vtype != 8:  # 8: string; anything else ends the walk
                    break
                (n,) = struct.unpack_from("<Q", buf, pos)
                if pos + 8 + n > size or n > 1 << 16:
                    break
                found[key] = bytes(buf[pos + 8 : pos + 8 + n]).decode("utf-8", "replace")
                pos += 8 + n
    except (OSError, ValueError, struct.error):
        return {}
    return found


# ----- libmtmd's log -----------------------------------------------------------------------------
class _MtmdLog:
    """libmtmd logs to stderr through a process-wide callback; this one keeps the recent errors (the
    reason a projector did not load, in libmtmd's words) and drops the chatter."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.errors: deque[str] = deque(maxlen=8)
        self.installed = False
        self.callback: Any = None
        self._in_error = False

    def install(self) -> None:
        with self.lock:
            if self.installed:
                return
            import llama_cpp
            import llama_cpp.mtmd_cpp as mtmd

            @llama_cpp.llama_log_callback
            def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
                # ggml.h: 4 = GGML_LOG_LEVEL_ERROR, 5 = CONT (the previous message goes on)
                if level == 4 or (level == 5 and self._in_error):
                    self._in_error = True
                    self.errors.append(text.decode("utf-8", "replace").strip())
                else:
                    self._in_error = False

            self.callback = callback  # kept alive as long as the library may call it
            mtmd.mtmd_log_set(callback, ctypes.c_void_p(0))
            mtmd.mtmd_helper_log_set(callback, ctypes.c_void_p(0))
            self.installed = True

    def take(self) -> str:
        """The errors logged since the last call, joined (empty when there were none)."""
        with self.lock:
            lines = [line.strip() for e in self.errors for line in e.splitlines()]
            self.errors.clear()
        # "mtmd_init_from_file: error: mismatch ..." -> "mismatch ..."; libmtmd's own hints give way to ours
        lines = [re.sub(r"^\w+: (error: )?", "", line) for line in lines if line and not line.startswith("hint:")]
        return "; ".join(lines)


_LOG = _MtmdLog()


# ----- a loaded projector -----------------------------------------------------------------------
@dataclass
class Piece:
    """A run of prompt positions: text tokens, or the embeddings of (part of) one image."""

    #: Text: the tokens. Image: its placeholder id, once per position.
    ids: list[int]
    #: Cache cells the piece takes (for most models the same as ``len(ids)``; fewer positions than
    #: cells for models with 2-D image positions, M-RoPE).
    n_tokens: int
    #: The libmtmd chunk of an image piece (valid while its :class:`VisionPrompt` is open); None for text.
    chunk: Any = None

    @property
    def is_image(self) -> bool:
        return self.chunk is not None


@dataclass
class VisionPrompt:
    """A prompt with images, tokenized by libmtmd. Close it (or use ``with``) to free libmtmd's memory."""

    pieces: list[Piece]
    _chunks: Any = None
    _bitmaps: list[Any] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        """One id per position: text tokens, and each image's placeholder where its embeddings go."""
        return [i for piece in self.pieces for i in piece.ids]

    @property
    def n_tokens(self) -> int:
        """Cache cells the prompt takes (what counts against the context)."""
        return sum(piece.n_tokens for piece in self.pieces)

    def cut_front(self, n: int, bos: int | None) -> bool:
        """Drop ``n`` text tokens from the start (after the BOS token, which stays); False when that
        would cut into an image (a part of an image is no image at all)."""
        if n <= 0:
            return True
        first = self.pieces[0] if self.pieces else None
        if first is None or first.is_image:
            return False
        keep = 1 if bos is not None and first.ids[:1] == [bos] else 0
        if len(first.ids) - keep <= n:
            return False
        first.ids = first.ids[:keep] + first.ids[keep + n :]
        first.n_tokens = len(first.ids)
        return True

    def close(self) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        chunks, self._chunks = self._chunks, None
        if chunks is not None:
            mtmd.mtmd_input_chunks_free(chunks)
        bitmaps, self._bitmaps = self._bitmaps, []
        for bitmap in bitmaps:
            mtmd.mtmd_bitmap_free(bitmap)
        for piece in self.pieces:
            piece.chunk = None

    def __enter__(self) -> VisionPrompt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def placeholder(image: ImageInput) -> int:
    """The id that stands for ``image`` at each of its positions: negative, so never a real token,
    and the same for the same bytes, so a cached image is recognised in the next prompt."""
    digest = hashlib.sha256(image.data).digest()
    return -1 - (int.from_bytes(digest[:4], "little") & 0x3FFFFFFF)


class Projector:
    """A vision projector loaded by libmtmd against one loaded ``Llama``. Not thread-safe for
    evaluation (like the model); :meth:`tokenize` only reads it (libmtmd takes it as ``const``)."""

    #: Images whose token count is remembered (:meth:`image_tokens`).
    CACHE_SIZE = 256

    def __init__(self, ctx: Any, path: Path, mrope: bool) -> None:
        self._ctx = ctx
        self.path = path
        #: The model places image embeddings on a 2-D grid of positions (M-RoPE, Qwen2-VL...): a
        #: cached image is not reused (its cells and positions do not line up with ``Llama.n_tokens``).
        self.mrope = mrope
        self._counts: OrderedDict[bytes, int] = OrderedDict()
        self._counts_lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, llm: Any, threads: int, use_gpu: bool) -> Projector:
        """Load the projector at ``path`` for ``llm``, or raise ``ModelLoadError`` saying why not."""
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        _LOG.install()
        _LOG.take()
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.print_timings = False
        params.n_threads = threads
        flash = getattr(getattr(llm, "context_params", None), "flash_attn_type", None)
        if flash == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED:
            params.flash_attn_type = flash
        ctx = mtmd.mtmd_init_from_file(str(path).encode(), llm.model, params)
        if not ctx:
            reason = _LOG.take() or "libmtmd gave no reason"
            hint = (
                "It was made for another model (its embedding size differs): pick the projector made for this "
                "model, or 'none' to load it without vision."
                if "mismatch" in reason
                else "The file may be corrupt or for a projector type this llama.cpp build does not know "
                "(update llama-cpp-python), or pick 'none' to load the model without vision."
            )
            raise ModelLoadError(f"The vision projector {path.name} could not be loaded: {reason}. {hint}")
        if not mtmd.mtmd_support_vision(ctx):
            mtmd.mtmd_free(ctx)
            raise ModelLoadError(
                f"{path.name} is a projector for audio, not images. Pick a vision projector, or 'none'."
            )
        return cls(ctx, path, bool(mtmd.mtmd_decode_use_mrope(ctx)))

    def tokenize(self, prompt: str, images: Sequence[ImageInput], add_special: bool = True) -> VisionPrompt:
        """``prompt`` (one ``IMAGE_MARKER`` per image) as text and image pieces. Raises
        ``AttachmentError`` for an image libmtmd cannot read."""
        import llama_cpp.mtmd_cpp as mtmd

        result = VisionPrompt(pieces=[])
        try:
            for image in images:
                data = (ctypes.c_uint8 * len(image.data)).from_buffer_copy(image.data)
                bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self._ctx, data, len(image.data), False)
                if not bitmap:
                    _LOG.take()
                    raise AttachmentError(
                        f"The image {image.name or ''} ({image.mime}, {image.width}x{image.height}) could not be "
                        "decoded for the model. Save it as PNG or JPEG and attach it again."
                    )
                result._bitmaps.append(bitmap)
                # Its chunks carry this id: it tells which image a chunk belongs to.
                mtmd.mtmd_bitmap_set_id(bitmap, str(len(result._bitmaps) - 1).encode())
            text = prompt.encode("utf-8")
            given = mtmd.mtmd_input_text()
            given.text = text
            given.text_len = len(text)
            given.add_special = add_special
            given.parse_special = True
            result._chunks = mtmd.mtmd_input_chunks_init()
            if not result._chunks:
                raise GenerationError("libmtmd could not allocate the prompt's chunks.")
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(result._bitmaps)))(*result._bitmaps)
            status = mtmd.mtmd_tokenize(self._ctx, result._chunks, ctypes.byref(given), bitmaps, len(result._bitmaps))
            if status != 0:
                reason = _LOG.take()
                raise GenerationError(f"libmtmd could not read the prompt with its images (code {status}). {reason}")
            marks = [placeholder(image) for image in images]
            for i in range(mtmd.mtmd_input_chunks_size(result._chunks)):
                chunk = mtmd.mtmd_input_chunks_get(result._chunks, i)
                kind = mtmd.mtmd_input_chunk_get_type(chunk)
                if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    count = ctypes.c_size_t()
                    tokens = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                    ids = [int(tokens[j]) for j in range(count.value)]
                    if result.pieces and not result.pieces[-1].is_image:
                        result.pieces[-1].ids += ids
                        result.pieces[-1].n_tokens += len(ids)
                    else:
                        result.pieces.append(Piece(ids, len(ids)))
                elif kind == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    # An image may come as several chunks (tiles, then an overview), each with its id.
                    mark = marks[int(mtmd.mtmd_input_chunk_get_id(chunk) or b"0")]
                    n_pos = int(mtmd.mtmd_input_chunk_get_n_pos(chunk))
                    n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
                    result.pieces.append(Piece([mark] * n_pos, n_tokens, chunk))
                else:
                    raise GenerationError("The prompt holds audio, which this model's projector cannot take.")
        except BaseException:
            result.close()
            raise
        return result

    def image_tokens(self, image: ImageInput) -> int:
        """Prompt tokens ``image`` adds in place of its marker: its embeddings and the model's tokens
        around them (remembered per image, so the context meter can ask often)."""
        key = hashlib.sha256(image.data).digest()
        with self._counts_lock:
            if key in self._counts:
                self._counts.move_to_end(key)
                return self._counts[key]
        with self.tokenize(IMAGE_MARKER, [image], add_special=False) as alone:
            n = alone.n_tokens
        with self._counts_lock:
            self._counts[key] = n
            while len(self._counts) > self.CACHE_SIZE:
                self._counts.popitem(last=False)
        return n

    def eval_image(self, llm: Any, piece: Piece, logits_last: bool) -> None:
        """Decode an image piece into ``llm``'s context at ``llm.n_tokens`` and record its placeholders
        in ``llm.input_ids`` (so the next prompt's prefix match sees what is cached there)."""
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        n_past = llm.n_tokens
        new_n_past = llama_cpp.llama_pos(0)
        status = mtmd.mtmd_helper_eval_chunk_single(
            self._ctx,
            llm._ctx.ctx,
            piece.chunk,
            llama_cpp.llama_pos(n_past),
            llama_cpp.llama_seq_id(0),
            llm.n_batch,
            logits_last,
            ctypes.byref(new_n_past),
        )
        if status != 0:
            reason = _LOG.take()
            raise GenerationError(f"llama.cpp could not evaluate an image (code {status}). {reason}".strip())
        end = n_past + len(piece.ids)
        if new_n_past.value != end:
            raise GenerationError(f"An image took {new_n_past.value - n_past} positions, expected {len(piece.ids)}.")
        llm.input_ids[n_past:end] = piece.ids
        llm.n_tokens = end

    def close(self) -> None:
        import llama_cpp.mtmd_cpp as mtmd

        ctx, self._ctx = self._ctx, None
        if ctx:
            mtmd.mtmd_free(ctx)
