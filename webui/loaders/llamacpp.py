"""llama.cpp loader (llama-cpp-python): GGUF files on the CPU, with optional GPU offload.

We drive ``Llama.generate`` token by token instead of ``create_completion`` so
that we count tokens exactly, decode UTF-8 incrementally (linear, not
re-detokenising the whole reply each step), check the caller's cancel event
between tokens and handle stop strings ourselves.

A model with a vision projector next to it (``mmproj*.gguf``, see ``mtmd.py``) also takes
images: the prompt is split by libmtmd into text and image pieces, evaluated into the same
context, and generation then runs exactly as for text.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from webui.attachments.types import IMAGE_MARKER, ImageInput
from webui.errors import EmptyPromptError, ModelLoadError, PromptTooLongError, UnsupportedFeatureError
from webui.loaders.base import (
    Backend,
    Capabilities,
    Chunk,
    FinishReason,
    ParallelSlots,
    StopStringFilter,
    StreamExtras,
    TokenLogprob,
    TokenView,
    local_path,
    truncate_prompt,
)
from webui.loaders.lazy import LazyTrigger
from webui.loaders.llama_draft import DraftModel, draft_path
from webui.loaders.llama_sampling import build_sampler, eog_tokens, new_grammar
from webui.loaders.llama_slots import SlotEngine
from webui.loaders.logprobs import LogprobMaker
from webui.loaders.mtmd import (
    Projector,
    VisionPrompt,
    find_projectors,
    is_projector,
    projector_not_a_model,
    resolve_projector,
)
from webui.params import LoadOptions, SamplingParams
from webui.sampling.chain import DryBreakers, sample_view

if TYPE_CHECKING:
    import numpy as np

GGUF_MAGIC = b"GGUF"

__all__ = ["LlamaCppBackend", "check_gguf_file", "find_projectors"]


def default_threads() -> int:
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except Exception:  # psutil missing or no answer on this platform
        physical = None
    return max(1, physical or os.cpu_count() or 1)


def _llama_class() -> type:
    from llama_cpp import Llama

    class WebUILlama(Llama):
        """``Llama`` whose sampler chain comes from ``sampling`` when it is set."""

        sampling = None

        def _init_sampler(self, *args: Any, **kwargs: Any) -> Any:
            if self.sampling is not None:
                return self.sampling()
            return super()._init_sampler(*args, **kwargs)

    return WebUILlama


#: Held while ``Llama`` reads its model parameters (see ``_model_params``).
_MODEL_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def _model_params(**fields: Any) -> Iterator[None]:
    """Set fields of llama.cpp's model parameters that ``Llama()`` takes no argument for, while it loads.

    ``use_extra_bufts`` (llama-server's ``--no-repack`` turns it off): with it, llama.cpp repacks Q4_0 and
    Q4_K weights into interleaved blocks whose kernel computes a batch of 4 rows otherwise than a single
    row, so a token's keys and values depended on its batch: gemma-3 gave another greedy reply to the
    same question once another prompt had been cached, and prompt lookup changed its text. Off, batches
    of up to 7 tokens give bit-identical rows, and prompts were read as fast here (bench/results).
    """
    import llama_cpp.llama as llama_module

    lib = llama_module.llama_cpp
    with _MODEL_PARAMS_LOCK:
        default = lib.llama_model_default_params

        def params() -> Any:
            made = default()
            for name, value in fields.items():
                setattr(made, name, value)
            return made

        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = default


def check_gguf_file(path: Path) -> None:
    """Raise ``ModelLoadError`` with a specific message if ``path`` cannot be a GGUF model."""
    if not path.exists():
        raise ModelLoadError(f"Model file not found: {path}", key="error.file_not_found", path=str(path))
    if path.is_dir():
        raise ModelLoadError(
            f"{path.name} is a folder, not a GGUF file. A GGUF model is a single .gguf file.",
            key="error.gguf_is_folder",
            name=path.name,
        )
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelLoadError(
            f"{path.name} is not a GGUF model file (it does not start with the GGUF signature; "
            f"{size} bytes). It may be a different format, an HTML error page saved by a failed "
            "download, or a corrupt file. Download it again.",
            key="error.not_gguf",
            name=path.name,
            size=size,
        )
    if is_projector(path):
        raise projector_not_a_model(path)


class LlamaCppBackend(Backend):
    name: ClassVar[str] = "llama.cpp"
    supported_params: ClassVar[frozenset[str]] = frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "typical_p",
            "repeat_penalty",
            "presence_penalty",
            "frequency_penalty",
            "mirostat_mode",
            "mirostat_tau",
            "mirostat_eta",
            "seed",
            "do_sample",
            "stop",
            "repeat_last_n",
            "dry_multiplier",
            "dry_base",
            "dry_allowed_length",
            "dry_penalty_last_n",
            "dry_sequence_breakers",
            "xtc_probability",
            "xtc_threshold",
            "ban_eos_token",
            "skip_special_tokens",
            "grammar_string",
            "json_schema",
            "truncation_length",
            "prompt_lookup",
        }
    )
    option_fields: ClassVar[tuple[str, ...]] = (
        "n_ctx",
        "threads",
        "n_gpu_layers",
        "n_batch",
        "parallel",
        "use_mmap",
        "use_mlock",
        "repack",
        "mmproj",
        "cache_type",
        "draft_model",
        "draft_max",
    )
    capabilities: ClassVar[Capabilities] = Capabilities(
        grammar=True, lazy_grammar=True, logprobs=True, sampler_views=True, warm_states=True
    )

    def __init__(
        self,
        llm: Any,
        path: Path,
        projector: Projector | None = None,
        projector_note: str = "",
        n_slots: int = 1,
        options: LoadOptions | None = None,
        draft: DraftModel | None = None,
    ) -> None:
        self._llm = llm
        self.path = path
        #: Each slot's context (the context holds ``n_slots`` of them).
        self.n_ctx = int(llm.n_ctx()) // max(1, n_slots)
        self._options = options or LoadOptions()
        self.metadata = dict(llm.metadata or {})
        self.chat_template = self.metadata.get("tokenizer.chat_template") or None
        self._eog = eog_tokens(llm)
        eog_set = frozenset(self._eog)
        self._is_eog = eog_set.__contains__
        self._max_token_bytes: int | None = None
        self._texts: dict[tuple[int, bool], str] = {}  # (token, special) -> its text, for views
        #: DRY's sequence breakers as tokens, per list of breaker strings (made at the first view that needs them).
        self._breakers: dict[tuple[str, ...], DryBreakers] = {}
        #: The vision projector (None: a text-only model, or loaded with ``mmproj`` = none).
        self._projector = projector
        self.metadata["vision"] = "yes" if projector is not None else "no"
        if projector is not None:
            self.metadata["vision.projector"] = projector.path.name
            self.capabilities = dataclasses.replace(type(self).capabilities, images=True)  # type: ignore[misc]
        if projector_note:
            self.metadata["vision.note"] = projector_note
        self._engine = SlotEngine(
            llm, n_slots, self.n_ctx, self._eog, draft=draft, draft_max=self._options.draft_max if draft else 0
        )
        if draft is not None:
            self.metadata["draft_model"] = draft.path.name
        self._slots = _LlamaSlots(self, self._engine)
        self.metadata["parallel"] = str(n_slots)
        self.capabilities = dataclasses.replace(self.capabilities, parallel_sequences=n_slots)  # type: ignore[misc]

    @classmethod
    def check(cls, path: Path | None, options: LoadOptions) -> None:
        path = local_path(path)
        check_gguf_file(path)
        resolve_projector(path, options.mmproj)
        draft_path(path, options.draft_model)

    @classmethod
    def load(cls, path: Path | None, options: LoadOptions) -> LlamaCppBackend:
        path = local_path(path)
        check_gguf_file(path)
        projector_path, note = resolve_projector(path, options.mmproj)  # a bad choice fails before the model is read
        drafter = draft_path(path, options.draft_model)
        try:
            Llama = _llama_class()
        except ImportError as exc:  # pragma: no cover - set-up installs it
            raise ModelLoadError(
                "llama-cpp-python is not installed. Run ./start.sh to set up.", key="error.llamacpp_missing"
            ) from exc
        threads = options.threads or default_threads()
        n_slots = max(1, options.parallel)
        try:
            with _model_params(use_extra_bufts=options.repack):
                llm = Llama(
                    model_path=str(path),
                    n_ctx=options.n_ctx,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_gpu_layers=options.n_gpu_layers,
                    n_batch=options.n_batch,
                    use_mmap=options.use_mmap,
                    use_mlock=options.use_mlock,
                    # Flash attention computes each position's attention on its own, so a token's logits do not
                    # depend on how the tokens were split into (narrow) batches: a slot's text is the same beside
                    # others. Without it, evaluating 8 tokens at once moved gemma-3's logits by up to 1.2 from 8
                    # single steps.
                    flash_attn=True,
                    type_k=CACHE_TYPES[options.cache_type],
                    type_v=CACHE_TYPES[options.cache_type],
                    verbose=False,
                )
            if n_slots > 1:
                _widen_context(llm, n_slots)
        except (ValueError, RuntimeError, OSError) as exc:
            size = path.stat().st_size
            raise ModelLoadError(
                f"llama.cpp could not load {path.name} ({size} bytes): {exc}. "
                "The file may be truncated or corrupt (download it again), or use an architecture "
                "this llama.cpp build does not know (update llama-cpp-python).",
                key="error.llamacpp_failed",
                name=path.name,
                size=size,
                detail=str(exc),
            ) from exc
        projector = draft = None
        try:
            if projector_path is not None:
                projector = Projector.load(projector_path, llm, threads, use_gpu=options.n_gpu_layers != 0)
            if drafter is not None:
                draft = DraftModel.load(
                    drafter, llm, n_slots, int(llm.n_ctx()) // n_slots, threads, options.n_gpu_layers
                )
        except BaseException:
            if projector is not None:
                projector.close()
            llm.close()
            raise
        backend = cls(llm, path, projector, note, n_slots, options, draft)
        backend.max_token_bytes()  # measured now, on the loading thread, not in a request's
        return backend

    def tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)

    def max_token_bytes(self) -> int | None:
        # Read-only on the vocabulary (safe beside a generation); a few hundred ms once, then cached.
        if self._max_token_bytes is None and self._llm is not None:
            model = self._llm._model
            self._max_token_bytes = max(
                (len(model.token_to_piece(t, special=True)) for t in range(self._llm.n_vocab())), default=0
            )
        return self._max_token_bytes or None

    def stream(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, extras: StreamExtras | None = None
    ) -> Iterator[Chunk]:
        self._borrow_first_slot()
        try:
            yield from self._stream(prompt, params, cancel, extras)
        finally:
            self._return_first_slot()

    def _stream(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, extras: StreamExtras | None = None
    ) -> Iterator[Chunk]:
        extras = extras or StreamExtras()
        llm = self._llm
        if extras.images:
            prompt_tokens, prompt_count, prompt_cut = self._prefill_vision(prompt, params, extras)
        else:
            prompt_tokens, prompt_cut = self.fit(prompt, params)
            prompt_count = len(prompt_tokens)
        room = self.n_ctx - prompt_count
        max_tokens = min(params.max_tokens, room)
        # Our sampler chain replaces Llama's for this generation (see llama_sampling.py).
        lazy = self._lazy_trigger(params, extras.grammar_triggers)
        prefix = None if lazy is not None else ()
        llm.sampling = lambda: build_sampler(llm, params, self.n_ctx, self._eog, grammar_prefix=prefix)
        special = not params.skip_special_tokens
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        top_n = extras.top_logprobs
        maker = LogprobMaker(top_n or 0, lambda t: llm.detokenize([t], special=special)) if top_n is not None else None
        n_views = extras.sampler_views
        breakers = self._dry_breakers(params) if n_views is not None else None
        out = StopStringFilter(params.stop, logprobs=maker is not None, views=n_views is not None)
        n_generated = 0
        generated: list[int] = []
        finish: FinishReason = "length"
        echo: list[TokenLogprob] | None = None
        if extras.echo_logprobs:  # (refused with images)
            echo = self._prefill_with_logprobs(prompt_tokens, top_n or 0)
        elif not extras.images:  # a prompt with images is in the cache already (_prefill_vision)
            self._prefill(prompt_tokens)
        tokens = llm.generate(prompt_tokens)
        # Sampler views are made VIEW_BATCH tokens at a time, from copies of the rows (the first token's at
        # once): the view's numpy code run cold after every decode took 2-3x as long as run several times
        # in a row. A token's text waits for its view; tokens drawn past a stop string are not sent.
        pending: list[_PendingToken] = []
        rows = _RowRing(llm.n_vocab()) if n_views is not None else None

        def flush() -> Iterator[Chunk]:
            nonlocal echo
            for chunk in self._feed(pending, out, decoder, generated, params, n_views, special, breakers):
                if echo is not None:
                    chunk.prompt_logprobs, echo = echo, None
                yield chunk
            pending.clear()

        try:
            for token in tokens:
                if cancel.is_set():
                    finish = "cancelled"
                    break
                if self._is_eog(token):
                    finish = "stop"
                    break
                # Both from the row the token was drawn from; the view's penalties see the tokens before it.
                entries = maker.entries(self._last_logits(), [token]) if maker is not None else ()
                row = self._capture_row(rows, len(pending)) if rows is not None else None
                n_generated += 1
                generated.append(token)
                if lazy is not None and (replay := lazy.feed(token)) is not None:
                    # The grammar starts here: a chain with it, knowing what was generated so far.
                    llm._sampler = build_sampler(llm, params, self.n_ctx, self._eog, generated, replay)
                    lazy = None
                pending.append(_PendingToken(token, len(generated) - 1, entries, row))
                at_limit = n_generated >= max_tokens
                if n_views is not None and not at_limit and 1 < n_generated and len(pending) < VIEW_BATCH:
                    continue
                yield from flush()
                if out.stopped:
                    finish = "stop"
                    break
                if at_limit:
                    break
            if pending and not out.stopped:  # ended by a cancel or an end-of-text: what was drawn is sent
                yield from flush()
                if out.stopped:
                    finish = "stop"
        finally:
            tokens.close()
            llm.sampling = None
        last = out.finish(finish, prompt_count, tail=decoder.decode(b"", final=True), prompt_cut=prompt_cut)
        last.prompt_logprobs = echo
        yield last

    def fit(self, prompt: str, params: SamplingParams) -> tuple[list[int], int]:
        """The prompt's tokens cut to ``truncation_length`` (from the front, keeping BOS) and how many were
        cut; ``PromptTooLongError`` when they leave no room to generate in a slot's context."""
        whole = self.tokenize(prompt)
        tokens = truncate_prompt(whole, params.truncation_length, self._llm.token_bos())
        if len(tokens) >= self.n_ctx:
            raise PromptTooLongError(len(tokens), self.n_ctx)
        if not tokens:
            raise EmptyPromptError()
        return tokens, len(whole) - len(tokens)

    def parallel(self) -> ParallelSlots | None:
        return self._slots

    @property
    def engine(self) -> SlotEngine:
        """The slot engine (its slots and counters, for tests and benchmarks)."""
        return self._engine

    def attach_warm_store(self, folder: Path, max_bytes: int) -> None:
        from webui.loaders.warm_state import WarmStore, model_key

        key = model_key(
            local_path(self.path),
            {
                "n_ctx": self.n_ctx,
                "n_seq_max": self.capabilities.parallel_sequences,
                "flash_attn": True,
                "cache_type": self._options.cache_type,
            },
        )
        self._engine.warm = WarmStore(folder, max_bytes, key)

    def _borrow_first_slot(self) -> None:
        """The one-sequence path (``Llama``'s own bookkeeping) runs in sequence 0, the first slot: it
        starts from what that slot holds, so the slot's cache is reused and stays right."""
        slot = self._engine.slots[0]
        llm = self._llm
        llm.n_tokens = len(slot.cached)
        llm.input_ids[: len(slot.cached)] = slot.cached

    def _return_first_slot(self) -> None:
        if self._llm is None:
            return
        slot = self._engine.slots[0]
        slot.cached = [int(t) for t in self._llm._input_ids[: self._llm.n_tokens]]
        slot.saved = False
        slot.exact, slot.body_end = 0, None  # read in Llama's own batches: not the slots' chunks

    def _feed(
        self,
        pending: list[_PendingToken],
        out: StopStringFilter,
        decoder: codecs.IncrementalDecoder,
        generated: list[int],
        params: SamplingParams,
        n_views: int | None,
        special: bool,
        breakers: DryBreakers | None,
    ) -> Iterator[Chunk]:
        """The chunks of ``pending`` tokens, in order, each with its view when views are asked for; stops
        at a stop string (the tokens after it are dropped)."""
        llm = self._llm
        for item in pending:
            views: list[TokenView] = []
            if n_views is not None and item.row is not None:
                # Penalties in llama.cpp's chain see only the tokens accepted before this one.
                history = generated[: item.index]
                views.append(self._token_view(item.token, item.row, params, history, n_views, special, breakers))
            chunk = out.feed(decoder.decode(llm.detokenize([item.token], special=special)), 1, item.entries, views)
            if out.stopped:
                return
            if chunk is not None:
                yield chunk

    def _capture_row(self, rows: _RowRing, k: int) -> np.ndarray:
        """A copy of the row the last token was drawn from (the next decode overwrites it), into ``rows[k]``.

        One ``memmove`` and nothing else: right after a decode has streamed the weights through the caches,
        Python and numpy run cold (a numpy view of the logits took 70 us there against 4 us warm, a pass
        for the row's logsumexp 0.25 ms against 0.06 ms), so the view's passes wait for its batch.
        """
        import llama_cpp

        return rows.fill(k, llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, -1))

    def _token_view(
        self,
        token: int,
        row: Any,
        params: SamplingParams,
        history: list[int],
        n_top: int,
        special: bool,
        breakers: DryBreakers | None,
    ) -> TokenView:
        """``token`` with what our sampler chain did to ``row``, the logits it was drawn from
        (``sampling.chain``); ``history``: the tokens generated before it."""
        view = sample_view(row, params, history, n_top=n_top, eog=self._eog, dry_breakers=breakers)
        return TokenView(self._text_of(token, special), token, view)

    def _dry_breakers(self, params: SamplingParams) -> DryBreakers | None:
        """DRY's sequence breakers as this model's tokens, made as llama.cpp makes them (None: DRY off)."""
        if params.dry_multiplier <= 0:
            return None
        key = tuple(params.dry_sequence_breakers)
        found = self._breakers.get(key)
        if found is None:
            llm = self._llm
            # llama.cpp reads every token's text (special ones written out) once per DRY sampler.
            pieces = [llm.detokenize([t], special=True) for t in range(llm.n_vocab())]
            found = DryBreakers.from_vocab(pieces, key, lambda text: llm.tokenize(text, add_bos=False, special=False))
            self._breakers[key] = found
        return found

    def _text_of(self, token: int, special: bool) -> str:
        key = (token, special)
        text = self._texts.get(key)
        if text is None:
            raw = self._llm.detokenize([token], special=special)
            text = self._texts[key] = raw.decode("utf-8", errors="replace")
        return text

    def token_text(self, token: int) -> str:
        return self._text_of(token, True)

    def next_token_logits(self, prompt: str) -> np.ndarray:
        """The raw logits after ``prompt``, evaluated as ``stream`` does (the cached prefix reused, the
        last token alone), so they are the row the first generated token would be drawn from."""
        import numpy as np

        tokens = self.tokenize(prompt)
        if len(tokens) >= self.n_ctx:
            raise PromptTooLongError(len(tokens), self.n_ctx)
        if not tokens:
            raise EmptyPromptError()
        self._borrow_first_slot()
        try:
            self._prefill(tokens)
            self._llm.eval(tokens[-1:])
            return np.array(self._last_logits(), dtype=np.float32)
        finally:
            self._return_first_slot()

    def image_tokens(self, image: ImageInput) -> int:
        if self._projector is None:
            return 0
        return self._projector.image_tokens(image)

    def _prefill_vision(self, prompt: str, params: SamplingParams, extras: StreamExtras) -> tuple[list[int], int, int]:
        """Evaluate a prompt with images, as ``_prefill`` does for text: the cache ends up holding all of
        it but the last position, reusing what the cache already holds of it.

        Returns the prompt's ids (one per position; see ``mtmd.VisionPrompt.ids``) for ``generate``,
        its size in tokens and how many tokens were cut from its start (``truncation_length``).
        """
        llm, projector = self._llm, self._projector
        name = self.path.name if self.path else "This model"
        if projector is None:
            raise UnsupportedFeatureError(
                f"{name} cannot see images: it was loaded without a vision projector (mmproj). Load it with "
                "the projector made for it (Model tab: vision projector), or use a vision model."
            )
        markers = prompt.count(IMAGE_MARKER)
        if markers != len(extras.images):
            raise UnsupportedFeatureError(
                f"The prompt has {markers} image marker(s) ({IMAGE_MARKER}) but the request has "
                f"{len(extras.images)} image(s): each image needs exactly one marker where it goes."
            )
        if extras.echo_logprobs:
            raise UnsupportedFeatureError(
                "Log-probabilities of the prompt (echo) are not available for a prompt with images: an image's "
                "positions have no tokens. Ask without echo."
            )
        with projector.tokenize(prompt, extras.images) as vision:
            whole = vision.n_tokens
            limit = params.truncation_length
            if limit > 0 and whole > limit and not vision.cut_front(whole - limit, llm.token_bos()):
                # Cutting would go through an image: refuse rather than feed the model half a picture.
                raise PromptTooLongError(whole, limit)
            count = vision.n_tokens
            if count >= self.n_ctx:
                raise PromptTooLongError(count, self.n_ctx)
            try:
                self._eval_pieces(vision)
            except BaseException:
                llm.reset()  # the cache may hold part of this prompt: trust none of it
                raise
            return vision.ids, count, whole - count

    def _eval_pieces(self, vision: VisionPrompt) -> None:
        """Have the cache hold ``vision`` up to its last position, reusing the cached prefix.

        The prefix ends at an image's first position when it would end inside one (an image is
        evaluated whole), and before the prompt's last piece when that is an image (``generate``
        needs fresh logits after it). When the prompt ends with text, its last token is left for
        ``generate`` to evaluate alone, as in ``_prefill``.
        """
        assert self._projector is not None
        llm, projector = self._llm, self._projector
        ids = vision.ids
        starts, at = [], 0
        for piece in vision.pieces:
            starts.append(at)
            at += len(piece.ids)
        last = vision.pieces[-1]
        end = len(ids) - 1 if not last.is_image else starts[-1]
        cached = llm.n_tokens
        common = 0
        for a, b in zip(llm._input_ids[:cached], ids[:end], strict=False):
            if a != b:
                break
            common += 1
        for piece, start in zip(vision.pieces, starts, strict=True):
            if piece.is_image and (projector.mrope or start < common < start + len(piece.ids)):
                common = min(common, start)
                break
        if common < cached:
            if not llm._ctx.kv_cache_seq_rm(-1, common, -1):
                llm.reset()
                common = 0
            llm.n_tokens = common
        for piece, start in zip(vision.pieces, starts, strict=True):
            stop = start + len(piece.ids)
            if stop <= common:
                continue
            if piece.is_image:
                projector.eval_image(llm, piece, logits_last=piece is last)
            else:
                llm.eval(piece.ids[common - start if common > start else 0 : len(piece.ids) - (piece is last)])
        if last.is_image:
            llm._requires_eval = False  # the logits after the image are current: generate samples from them

    def _lazy_trigger(self, params: SamplingParams, triggers: tuple[str, ...]) -> LazyTrigger | None:
        """The watcher of a lazy grammar's triggers, or None when the grammar (if any) applies at once."""
        if not triggers or not params.grammar_string.strip():
            return None
        llm = self._llm
        import llama_cpp

        llama_cpp.llama_sampler_free(new_grammar(llm, params.grammar_string))  # a bad grammar fails now
        return LazyTrigger(
            triggers,
            piece=lambda t: llm.detokenize([t], special=True),
            tokenize=lambda text: llm.tokenize(text, add_bos=False, special=True),
        )

    def _last_logits(self) -> Any:
        """The raw logits the last token was drawn from (a view, valid until the next decode).

        ``generate`` decodes the previous token, samples from the logits of that batch's last
        position and hands us the token before it decodes again, so this is that distribution.
        """
        import llama_cpp
        import numpy as np

        llm = self._llm
        pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),))

    def _prefill_with_logprobs(self, prompt_tokens: list[int], top_n: int) -> list[TokenLogprob]:
        """Like ``_prefill``, but from an empty cache with logits for every position (``echo``).

        The prompt is evaluated in batches of ``n_batch`` positions whose logits are turned
        into logprobs at once, so memory stays at one batch of logits however long the prompt.
        """
        import numpy as np

        llm = self._llm
        maker = LogprobMaker(top_n, lambda t: llm.detokenize([t], special=True))
        llm.reset()
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        entries = [maker.first_prompt_entry(prompt_tokens[0])]
        body = prompt_tokens[:-1]
        n_vocab = llm.n_vocab()
        for i in range(0, len(body), llm.n_batch):
            batch = body[i : i + llm.n_batch]
            n_past = llm.n_tokens
            llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=True)
            llm._ctx.decode(llm._batch)
            llm.input_ids[n_past : n_past + len(batch)] = batch
            llm.n_tokens += len(batch)
            rows = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(batch), n_vocab))
            entries += maker.entries(rows, prompt_tokens[i + 1 : i + 1 + len(batch)])
        return entries

    def _prefill(self, prompt_tokens: list[int]) -> None:
        """Have the KV cache hold all prompt tokens but the last, reusing the cached prefix.

        ``generate`` then evaluates the last prompt token on its own, whether the
        prompt was cached or not. Logits from a one-token batch differ in the last
        bits from those of a many-token batch, so without this a repeated request
        (prompt cached) would sample differently from the first one with the same
        seed.
        """
        llm = self._llm
        cached = llm.n_tokens
        common = 0
        for a, b in zip(llm._input_ids[:cached], prompt_tokens[:-1], strict=False):
            if a != b:
                break
            common += 1
        if common < cached:
            if not llm._ctx.kv_cache_seq_rm(-1, common, -1):
                llm.reset()
                common = 0
            llm.n_tokens = common
        if common < len(prompt_tokens) - 1:
            llm.eval(prompt_tokens[common:-1])

    def close(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close()
        projector, self._projector = self._projector, None
        if projector is not None:
            projector.close()  # before the model it was loaded against
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()


#: ggml's type numbers of the KV cache types (``LoadOptions.cache_type``). With fp16 (and f32) keys and values,
#: llama.cpp's CPU flash attention reads a decode of one token per sequence in chunks of the cache, one per
#: thread, once the cache holds 512 cells or more, and adds them up in another order than a decode of several
#: tokens, or of several sequences: gemma-3's logits moved by up to 0.9, and a 820-token prompt got another
#: greedy reply beside a second request than alone. bf16 and q8_0 caches always take the one path.
CACHE_TYPES: dict[str, int] = {"fp16": 1, "bf16": 30, "q8_0": 8}


def _widen_context(llm: Any, n_slots: int) -> None:
    """Give ``llm`` a context of ``n_slots`` sequences, each as long as the one it was made with.

    ``Llama`` makes a one-sequence context; its parameters are kept, with ``n_seq_max`` slots and a
    context that many times longer (each sequence gets its share: llama.cpp's default KV cache is not
    unified, so one slot can never crowd out another).
    """
    from llama_cpp import _internals

    params = llm.context_params
    params.n_seq_max = n_slots
    params.n_ctx = llm.n_ctx() * n_slots
    old = llm._ctx
    old.close()  # its KV cache is freed before the bigger one is made
    llm._ctx = llm._stack.enter_context(contextlib.closing(_internals.LlamaContext(model=llm._model, params=params)))
    # (``input_ids``, ``_n_ctx`` and the rest of ``Llama``'s own bookkeeping stay one sequence long: its
    # one-sequence path runs in sequence 0.)


class _LlamaSlots:
    """The backend's ``ParallelSlots``: requests tokenized and fitted as ``stream`` does, run by the engine."""

    def __init__(self, backend: LlamaCppBackend, engine: SlotEngine) -> None:
        self._backend = backend
        self._engine = engine

    def can_take(self, extras: StreamExtras | None) -> bool:
        return self._engine.can_take(extras)

    def free(self) -> int:
        return self._engine.free()

    def busy(self) -> bool:
        return self._engine.busy()

    def start(
        self,
        prompt: str,
        params: SamplingParams,
        cancel: threading.Event,
        extras: StreamExtras | None,
        emit: Callable[[Chunk], None],
    ) -> None:
        tokens, cut = self._backend.fit(prompt, params)
        self._engine.start(tokens, params, cancel, extras, emit, prompt_cut=cut)

    def step(self) -> None:
        self._engine.step()

    def idle(self) -> None:
        self._engine.idle()

    def reset(self) -> None:
        self._engine.reset()


#: Tokens whose sampler views are made together (see ``_stream``): 8 made the view's cost per token 2.5x
#: lower on SmolLM2 and 1.6x on gemma-3 than one at a time, and delays the text by 8 tokens at most.
VIEW_BATCH = 8


@dataclasses.dataclass
class _PendingToken:
    """A drawn token not sent yet: its place in the generated tokens, its logprobs, its row of logits."""

    token: int
    index: int
    entries: Any
    row: Any


class _RowRing:
    """``VIEW_BATCH`` rows of logits, reused batch after batch: a token's row is copied in with one
    ``memmove`` (no array made, no page touched for the first time) and read when its batch's views are made."""

    def __init__(self, n_vocab: int) -> None:
        import numpy as np

        self.rows = np.empty((VIEW_BATCH, n_vocab), dtype=np.float32)
        self._row_bytes = self.rows.strides[0]
        self._base = self.rows.ctypes.data

    def fill(self, k: int, source: Any) -> np.ndarray:
        ctypes.memmove(self._base + k * self._row_bytes, source, self._row_bytes)
        return self.rows[k]
