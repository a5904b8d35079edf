"""transformers loader: a Hugging Face model folder (``config.json`` + ``*.safetensors``).

A vision-language folder loads with its processor and sees images (``hf_vision``); any other
loads as a causal language model.

``model.generate`` runs in a worker thread. A streamer (ours, not
``TextIteratorStreamer``, which holds text back until a word ends and so sees a
stop string late) turns each new token into text at once; a stopping criterion
ends generation when the caller's cancel event (or our own stop-string event)
is set.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from webui.attachments.types import ImageInput
from webui.errors import (
    EmptyPromptError,
    GenerationError,
    ModelLoadError,
    PromptTooLongError,
    UnsupportedFeatureError,
    WebUIError,
)
from webui.loaders.base import (
    Backend,
    Capabilities,
    Chunk,
    FinishReason,
    StopStringFilter,
    StreamExtras,
    TokenLogprob,
    TokenView,
    local_path,
    truncate_prompt,
)
from webui.loaders.hf_grammar import GrammarProcessor, llg_tokenizer, new_matcher
from webui.loaders.hf_vision import (
    VisionInputs,
    VisionProcessor,
    is_vision_config,
    load_processor,
    per_token,
    uses_multimodal_positions,
)
from webui.loaders.lazy import LazyTrigger
from webui.loaders.logprobs import LogprobMaker
from webui.params import LoadOptions, SamplingParams
from webui.sampling.chain import sample_view

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def is_embedding_folder(path: Path) -> bool:
    """A sentence-transformers folder (``modules.json``, a pooling module): an embedding model, never a chat model."""
    return path.is_dir() and ((path / "modules.json").is_file() or (path / "1_Pooling").is_dir())


def refuse_embedding_folder(path: Path) -> None:
    """A sentence-transformers folder is an embedding model: say where it goes instead of failing in transformers."""
    if is_embedding_folder(path):
        raise ModelLoadError(
            f"{path.name} is an embedding model (sentence-transformers), not a chat model: load it under "
            "'Embedding model' in the Model tab, or with --embedding-model, and use it through /v1/embeddings.",
            key="error.embedding_not_chat",
            name=path.name,
        )


def check_hf_folder(path: Path, *, trust_remote_code: bool) -> dict[str, Any]:
    """Validate a model folder before handing it to transformers; return its config."""
    if not path.exists():
        raise ModelLoadError(f"Model folder not found: {path}")
    if not is_hf_folder(path):
        raise ModelLoadError(f"{path.name} is not a transformers model folder (no config.json inside).")
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path.name}/config.json is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path.name}/config.json must hold a JSON object.")
    if not any(path.glob("*.safetensors")):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise ModelLoadError(
                f"{path.name} has only pickle weights (.bin/.pt). Pickle files can run arbitrary code "
                "when loaded, so they are refused; download the .safetensors version of this model."
            )
        raise ModelLoadError(f"{path.name} has no .safetensors weight files.")
    if config.get("auto_map") and not trust_remote_code:
        raise ModelLoadError(
            f"{path.name} needs its own Python code to run (auto_map in config.json). That code comes "
            "from the model's author and runs with your permissions; load it only if you trust it, "
            "with 'trust remote code' ticked (or --trust-remote-code)."
        )
    return config


class _Cancel:
    """Stopping criterion: ends generation when any of ``events`` is set.

    Duck-typed (``StoppingCriteriaList`` only needs a callable), which keeps
    torch out of this module's imports.
    """

    def __init__(self, events: tuple[threading.Event, ...]) -> None:
        self.events = events

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = any(e.is_set() for e in self.events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


#: A streamed piece: its text, how many tokens made it, their logprob entries and sampler views.
_Piece = tuple[str, int, list[TokenLogprob], list[TokenView]]


class _TokenStreamer:
    """Streamer for ``generate``: turns token ids into text one token at a time.

    ``generate`` calls ``put`` (first with the prompt, then with each new token)
    and ``end`` from its thread; the consumer iterates ``(text, n_tokens)``
    pairs. Text is decoded incrementally over a short window of recent tokens
    (so a word's leading space is kept) and held back while it ends in half a
    UTF-8 character. End-of-sequence tokens are noted, not counted, as in the
    llama.cpp loader. With ``per_token`` each piece carries its tokens' logprob entries
    and sampler views.
    """

    def __init__(
        self,
        tokenizer: Any,
        eos_ids: frozenset[int],
        skip_special: bool = True,
        per_token: Callable[[int], tuple[TokenLogprob | None, TokenView | None]] | None = None,
    ) -> None:
        self._tok = tokenizer
        self._skip_special = skip_special
        self._eos_ids = eos_ids
        #: Called with each new token (EOS too, to stay in step): its logprob entry and its view.
        self._per_token = per_token
        self._entries: list[TokenLogprob] = []  # of the tokens not yet sent
        self._views: list[TokenView] = []  # of the tokens not yet sent
        self._queue: queue.SimpleQueue[_Piece | None] = queue.SimpleQueue()
        self._ids: list[int] = []
        self._prefix = 0  # window start: context for decoding, already sent
        self._read = 0  # tokens whose text has been sent
        self._pending = 0  # tokens not yet sent with any text
        self._prompt_seen = False
        self.n_tokens = 0
        self.eos = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            entry, view = self._per_token(token) if self._per_token is not None else (None, None)
            if token in self._eos_ids:
                self.eos = True
                continue
            if entry is not None:
                self._entries.append(entry)
            if view is not None:
                self._views.append(view)
            self._ids.append(int(token))
            self._pending += 1
            self.n_tokens += 1
        self._flush(final=False)

    def end(self) -> None:
        self._flush(final=True)
        self._queue.put(None)

    def abort(self) -> None:
        """End the stream without decoding (generate failed)."""
        self._queue.put(None)

    def _flush(self, *, final: bool) -> None:
        if not self._pending:
            return
        decode = self._tok.decode
        skip = self._skip_special
        prefix_text = decode(self._ids[self._prefix : self._read], skip_special_tokens=skip)
        new_text = decode(self._ids[self._prefix :], skip_special_tokens=skip)
        if not final and (len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd")):
            return  # nothing printable yet (half a character, or a special token)
        self._queue.put((new_text[len(prefix_text) :], self._pending, self._entries, self._views))
        self._pending, self._entries, self._views = 0, [], []
        self._prefix, self._read = self._read, len(self._ids)

    def __iter__(self) -> Iterator[_Piece]:
        while (item := self._queue.get()) is not None:
            yield item


class _RawLogits:
    """Forward hook: the last position's logits of each forward pass, before any processor.

    ``generate`` runs the model once per new token and then hands the token to the
    streamer, so the rows and the streamed tokens come in step.
    """

    def __init__(self) -> None:
        self.rows: collections.deque[Any] = collections.deque()

    def __call__(self, module: Any, args: Any, output: Any) -> None:
        logits = output.logits if hasattr(output, "logits") else output[0]
        self.rows.append(logits[0, -1].detach().float().cpu())


def _view_params(params: SamplingParams) -> SamplingParams:
    """``params`` as transformers applies them, for ``sampling.chain`` (with ``order="transformers"``,
    which runs temperature before top_k/top_p/min_p/typical_p as ``generate`` does): the samplers it
    does not have switched off, and the repetition penalty over the whole sequence (prompt and
    reply), as ``RepetitionPenaltyLogitsProcessor`` does."""
    return params.model_copy(
        update={
            "repeat_last_n": -1,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "dry_multiplier": 0.0,
            "xtc_probability": 0.0,
            "mirostat_mode": 0,
        }
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _as_ids(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}


class TransformersBackend(Backend):
    name: ClassVar[str] = "transformers"
    supported_params: ClassVar[frozenset[str]] = frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "typical_p",
            "repeat_penalty",
            "seed",
            "do_sample",
            "stop",
            "ban_eos_token",
            "skip_special_tokens",
            "truncation_length",
            "grammar_string",
            "json_schema",
        }
    )
    option_fields: ClassVar[tuple[str, ...]] = ("n_ctx", "threads", "dtype", "device", "trust_remote_code")
    capabilities: ClassVar[Capabilities] = Capabilities(
        grammar=True, lazy_grammar=True, logprobs=True, sampler_views=True
    )

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        path: Path,
        n_ctx: int,
        config: dict[str, Any],
        vision: VisionProcessor | None = None,
    ) -> None:
        self._model = model
        self._tok = tokenizer
        self.path = path
        self.n_ctx = n_ctx
        self._max_token_bytes: int | None = None
        self.chat_template = getattr(tokenizer, "chat_template", None) or None
        #: The processor of a vision-language model (None: a text model, which refuses images).
        self._vision = vision
        if vision is not None:
            self.capabilities = dataclasses.replace(type(self).capabilities, images=True)  # type: ignore[misc]
            self.chat_template = vision.chat_template
        self.metadata = {k: v for k, v in config.items() if isinstance(v, (str, int, float, bool))}
        # generate() ends at any of the generation config's end-of-sequence ids (a list for
        # models with several end-of-turn tokens) and at the tokenizer's.
        gen_config = getattr(model, "generation_config", None)
        self._eos_ids = frozenset(_as_ids(getattr(gen_config, "eos_token_id", None)) | _as_ids(tokenizer.eos_token_id))
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # The KV cache of the last generation and the token ids it holds: the next prompt
        # (a chat's next turn) evaluates only the tokens after the common prefix.
        self._cache: Any = None
        self._cache_ids: list[int] = []
        #: The images whose tokens that cache holds (``VisionInputs.key``): image tokens are alike
        #: for any picture of a size, so the ids alone cannot tell two pictures apart.
        self._cache_images: tuple[bytes, ...] = ()
        # A vision model's cache is kept only where the image tokens can be found, and where
        # positions do not depend on the images (see ``uses_multimodal_positions``).
        self._cache_usable = vision is None or (
            vision.image_token_id is not None and not uses_multimodal_positions(model.config.get_text_config())
        )
        #: Prompt tokens of the last generation that came from the cache instead of being evaluated.
        self.reused_tokens = 0
        self._llg_tok: Any = None  # llguidance's tokenizer, made at the first grammar

    #: Keep the KV cache between generations (switched off only to measure the difference).
    reuse_cache: ClassVar[bool] = True
    path: Path  # always a local folder (capabilities.local_files)

    @classmethod
    def check(cls, path: Path | None, options: LoadOptions) -> None:
        check_hf_folder(local_path(path), trust_remote_code=options.trust_remote_code)
        refuse_embedding_folder(local_path(path))

    @classmethod
    def load(cls, path: Path | None, options: LoadOptions) -> TransformersBackend:
        path = local_path(path)
        config = check_hf_folder(path, trust_remote_code=options.trust_remote_code)
        refuse_embedding_folder(path)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - set-up installs them
            raise ModelLoadError("transformers/torch are not installed. Run ./start.sh to set up.") from exc
        if options.threads:
            torch.set_num_threads(options.threads)
        device = options.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError("Device 'cuda' was chosen but this PyTorch has no CUDA GPU. Pick 'cpu'.")
        if options.dtype == "auto":
            dtype = torch.float32 if device == "cpu" else torch.float16
        else:
            dtype = getattr(torch, options.dtype)
        vision_config = is_vision_config(config)
        vision: VisionProcessor | None = None
        no_processor = ""  # why a vision-language folder has no usable processor
        try:
            processor = None
            if vision_config:
                processor, no_processor = load_processor(path, trust_remote_code=options.trust_remote_code)
            if processor is not None:
                vision = VisionProcessor(processor)
                tokenizer = vision.tokenizer
            else:
                tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=options.trust_remote_code)
            auto_model = AutoModelForImageTextToText if vision is not None else AutoModelForCausalLM
            model = auto_model.from_pretrained(
                path,
                dtype=dtype,
                trust_remote_code=options.trust_remote_code,
                use_safetensors=True,
                device_map=None if device == "cpu" else device,
            )
        except Exception as exc:  # transformers raises many kinds; all mean "could not load"
            if no_processor and vision is None:  # tried as a text model (whose error lists every model class)
                raise ModelLoadError(
                    f"{path.name} is a vision-language model, but {no_processor}. As a text model it does not "
                    f"load either: {_first_line(exc)}"
                ) from exc
            raise ModelLoadError(f"transformers could not load {path.name}: {exc}") from exc
        model.eval()
        text_config = model.config.get_text_config()  # multimodal configs nest the language model's
        trained = int(getattr(text_config, "max_position_embeddings", 0) or 0) or 2048
        n_ctx = min(options.n_ctx, trained) if options.n_ctx else trained
        return cls(model, tokenizer, path, n_ctx, config, vision)

    def tokenize(self, text: str) -> list[int]:
        return list(self._tok(text, add_special_tokens=True)["input_ids"])

    def image_tokens(self, image: ImageInput) -> int:
        return self._vision.image_tokens(image) if self._vision is not None else 0

    def max_token_bytes(self) -> int | None:
        # The vocabulary's strings as UTF-8: never shorter than the bytes a token stands for (byte-level
        # BPE writes one byte as one character), so the bound stays safe.
        if self._max_token_bytes is None:
            self._max_token_bytes = max((len(t.encode("utf-8")) for t in self._tok.get_vocab()), default=0)
        return self._max_token_bytes or None

    def _generate_kwargs(self, params: SamplingParams, max_new_tokens: int) -> dict[str, Any]:
        # Every value is passed explicitly, so the model's generation_config.json (whose
        # sampling defaults the author chose) never changes what the user asked for. In
        # transformers 5 an explicit None switches a warper off; 0/1.0 mean "off" here too.
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "min_new_tokens": None,
            "repetition_penalty": params.repeat_penalty,
            "num_beams": 1,
            # ban EOS: never let the model end the reply (it writes until max_new_tokens)
            "suppress_tokens": sorted(self._eos_ids) if params.ban_eos_token else None,
        }
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None, min_p=None, typical_p=None)
        else:
            kwargs.update(
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k or None,
                min_p=params.min_p or None,
                typical_p=params.typical_p,
            )
        return kwargs

    def stream(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, extras: StreamExtras | None = None
    ) -> Iterator[Chunk]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        extras = extras or StreamExtras()
        ids, vision, whole_len = self._prompt_inputs(prompt, params, extras)
        prompt_len = int(ids["input_ids"].shape[-1])
        if prompt_len >= self.n_ctx:
            raise PromptTooLongError(prompt_len, self.n_ctx)
        max_new = min(params.max_tokens, self.n_ctx - prompt_len)
        if cancel.is_set():  # generate() would still make one token before asking the criterion
            yield Chunk("", finish_reason="cancelled", prompt_tokens=prompt_len)
            return
        # Sampling draws from torch's default generator (CPU and CUDA). Seed only that:
        # transformers.set_seed would also reseed Python's and NumPy's global RNGs, from which
        # the generation service draws the next random seed.
        torch.manual_seed(params.seed)
        stop_event = threading.Event()
        device = self._model.device
        inputs = {k: ids[k].to(device) for k in ("input_ids", "attention_mask") if k in ids}
        prompt_ids = [int(t) for t in inputs["input_ids"][0].tolist()]
        media = vision.on_device(self._model) if vision is not None else {}
        processors = self._grammar_processors(params, extras.grammar_triggers, prompt_len)
        wants_rows = extras.top_logprobs is not None or extras.sampler_views is not None
        raw_logits = _RawLogits() if wants_rows else None
        streamer = _TokenStreamer(
            self._tok,
            self._eos_ids,
            skip_special=params.skip_special_tokens,
            per_token=self._per_token_source(raw_logits, params, extras, prompt_ids),
        )
        failure: list[BaseException] = []
        images_key = vision.key if vision is not None else ()
        cache = self._cache_for(prompt_ids, images_key, media)
        self.reused_tokens = cache.get_seq_length() if cache is not None else 0
        self._cache, self._cache_ids = None, []  # until this generation has finished cleanly
        # The image tokens go through the model with their pixels once: in the prefill when a
        # cache is continued and they are not in it yet, or else in generate's first pass.
        prefill_media = media if cache is not None and self._has_images(prompt_ids[self.reused_tokens :]) else {}
        generate_media = media if cache is None else {}
        echo: list[TokenLogprob] | None = None
        if extras.echo_logprobs:
            echo, cache = self._echo_logprobs(prompt_ids, inputs["input_ids"], cache, extras.top_logprobs or 0)
            self.reused_tokens = 0
        sequences: list[Any] = []

        def run() -> None:
            hook = None
            try:
                with torch.inference_mode():  # grad mode is per thread: set it in the worker
                    extra: dict[str, Any] = {}
                    if cache is not None:
                        self._prefill(cache, prompt_ids, inputs["input_ids"], prefill_media)
                        extra["past_key_values"] = cache
                    if processors:
                        extra["logits_processor"] = LogitsProcessorList(processors)
                    if raw_logits is not None:
                        hook = self._model.register_forward_hook(raw_logits)
                    sequences.append(
                        self._model.generate(
                            **inputs,
                            **generate_media,
                            streamer=streamer,
                            stopping_criteria=StoppingCriteriaList([_Cancel((cancel, stop_event))]),
                            pad_token_id=self._pad_id,
                            **extra,
                            **self._generate_kwargs(params, max_new),
                        )
                    )
            except BaseException as exc:  # re-raised in the consumer below
                failure.append(exc)
                streamer.abort()
            finally:
                if hook is not None:
                    hook.remove()

        worker = threading.Thread(target=run, name="transformers-generate", daemon=True)
        worker.start()
        out = StopStringFilter(
            params.stop, logprobs=extras.top_logprobs is not None, views=extras.sampler_views is not None
        )
        try:
            for piece, n, entries, views in streamer:
                chunk = out.feed(piece, n, entries, views)
                if out.stopped:
                    break
                if chunk is not None:
                    if echo is not None:
                        chunk.prompt_logprobs, echo = echo, None
                    yield chunk
        finally:
            stop_event.set()  # ends generation early on a stop string, or when our consumer went away
            worker.join()
            if cache is not None and sequences and not failure:
                held = cache.get_seq_length()
                self._cache, self._cache_ids = cache, [int(t) for t in sequences[0][0].tolist()][:held]
                self._cache_images = images_key
        if failure:
            if isinstance(failure[0], WebUIError):  # a grammar the text cannot follow, said plainly
                raise failure[0]
            raise GenerationError(f"transformers failed while generating: {failure[0]}") from failure[0]
        finish: FinishReason
        if out.stopped or streamer.eos:
            finish = "stop"
        elif streamer.n_tokens >= max_new:
            finish = "length"
        elif cancel.is_set():
            finish = "cancelled"
        else:
            finish = "stop"  # another criterion of the model's generation config ended it
        last = out.finish(finish, prompt_len, prompt_cut=whole_len - prompt_len)
        last.prompt_logprobs = echo
        yield last

    def token_text(self, token: int) -> str:
        return str(self._tok.decode([token], skip_special_tokens=False))

    def next_token_logits(self, prompt: str) -> np.ndarray:
        """The raw logits after ``prompt``, evaluated as ``stream`` does: the kept KV cache's prefix
        reused, the rest of the prompt but its last token in one pass, the last token alone."""
        import numpy as np
        import torch

        prompt_ids = self.tokenize(prompt)
        n = len(prompt_ids)
        if not n:
            raise EmptyPromptError()
        if n >= self.n_ctx:
            raise PromptTooLongError(n, self.n_ctx)
        device = self._model.device
        input_ids = torch.tensor([prompt_ids], device=device)
        cache = self._cache_for(prompt_ids)
        self._cache, self._cache_ids = None, []  # until this pass has finished cleanly
        with torch.inference_mode():
            if cache is None:
                logits = self._model(input_ids=input_ids).logits
            else:
                self._prefill(cache, prompt_ids, input_ids)
                logits = self._model(
                    input_ids=input_ids[:, -1:],
                    past_key_values=cache,
                    use_cache=True,
                    cache_position=torch.tensor([n - 1], device=device),
                    attention_mask=torch.ones(1, n, dtype=torch.long, device=device),
                ).logits
                self._cache, self._cache_ids, self._cache_images = cache, prompt_ids, ()
        return np.array(logits[0, -1].float().cpu().numpy(), dtype=np.float32)

    def _prompt_inputs(
        self, prompt: str, params: SamplingParams, extras: StreamExtras
    ) -> tuple[dict[str, Any], VisionInputs | None, int]:
        """The prompt's token ids (and its images' inputs), cut to ``truncation_length``; and its
        length before the cut."""
        import torch

        vision: VisionInputs | None = None
        if extras.images:
            if self._vision is None:
                raise UnsupportedFeatureError(
                    f"{self.path.name} is a text-only model: it cannot see images. Load a vision-language "
                    "model (a folder whose config.json has a vision_config, with its processor files), "
                    "or send text only."
                )
            if extras.echo_logprobs:
                raise UnsupportedFeatureError(
                    "Prompt log-probabilities (echo) are not available for a prompt with images on "
                    "the transformers loader: send the request without images or without echo."
                )
            vision = self._vision.inputs(prompt, extras.images)
            ids = vision.tokens
        else:
            ids = self._tok(prompt, return_tensors="pt", add_special_tokens=True)
        whole = ids["input_ids"][0].tolist()
        limit = params.truncation_length
        if not limit or len(whole) <= limit:
            return ids, vision, len(whole)
        kept = truncate_prompt(whole, limit, self._tok.bos_token_id)
        if self._vision is not None and vision is not None and not self._vision.keeps_images(whole, kept):
            # Cutting into an image would leave pixels without their tokens.
            raise PromptTooLongError(len(whole), limit)
        cut = {"input_ids": torch.tensor([kept]), "attention_mask": torch.ones(1, len(kept), dtype=torch.long)}
        return cut, vision, len(whole)

    def _has_images(self, ids: list[int]) -> bool:
        return self._vision is not None and self._vision.count_images(ids) > 0

    def _grammar_processors(
        self, params: SamplingParams, triggers: tuple[str, ...], prompt_len: int
    ) -> list[GrammarProcessor]:
        """The grammar's logits processor, if the request has a grammar (or a JSON schema)."""
        json_schema = params.json_schema.strip()
        if not params.grammar_string.strip() and not json_schema:
            return []
        if self._llg_tok is None:
            self._llg_tok = llg_tokenizer(self._tok, self._eos_ids)
        llg_tok = self._llg_tok
        matcher = new_matcher(llg_tok, params.grammar_string, json_schema)
        lazy = None
        if triggers:
            lazy = LazyTrigger(triggers, piece=lambda t: llg_tok.decode_bytes([t]), tokenize=llg_tok.tokenize_bytes)
        return [GrammarProcessor(matcher, prompt_len, lazy)]

    def _per_token_source(
        self, raw_logits: _RawLogits | None, params: SamplingParams, extras: StreamExtras, prompt_ids: list[int]
    ) -> Callable[[int], tuple[TokenLogprob | None, TokenView | None]] | None:
        """For the streamer: each new token's logprob entry and sampler view, both from the row of
        logits ``raw_logits`` recorded for it (the row it was drawn from)."""
        if raw_logits is None:
            return None
        tok = self._tok
        skip = params.skip_special_tokens
        maker = LogprobMaker(extras.top_logprobs or 0, lambda t: tok.decode([t], skip_special_tokens=skip).encode())
        n_views = extras.sampler_views
        view_params = _view_params(params)
        eos = tuple(self._eos_ids)
        # transformers' repetition penalty looks at the whole sequence, the prompt's tokens too.
        history = list(prompt_ids)
        rows = raw_logits.rows

        def per_token(token: int) -> tuple[TokenLogprob | None, TokenView | None]:
            if not rows:
                return None, None
            row = rows.popleft().numpy()
            entry = maker.entries(row, [token])[0] if extras.top_logprobs is not None else None
            view = None
            if n_views is not None:
                found = sample_view(row, view_params, history, n_top=n_views, eog=eos, order="transformers")
                view = TokenView(maker.piece(token)[0], token, found)
            history.append(token)
            return entry, view

        return per_token

    def _echo_logprobs(self, prompt_ids: list[int], input_ids: Any, cache: Any, top_n: int) -> tuple[list[Any], Any]:
        """Logprobs of the prompt's tokens (``echo``), from one pass over all of it but the last token.

        That pass fills a fresh KV cache, which the generation then continues from (returned
        with the entries), so the prompt is not evaluated twice. Logits are turned into
        logprobs a block of positions at a time, so memory stays bounded.
        """
        import torch
        from transformers import DynamicCache

        tok = self._tok
        maker = LogprobMaker(top_n, lambda t: tok.decode([t], skip_special_tokens=False).encode("utf-8"))
        entries = [maker.first_prompt_entry(prompt_ids[0])]
        fresh = DynamicCache(config=self._model.config)
        n = len(prompt_ids) - 1
        block = 256
        with torch.inference_mode():
            for start in range(0, n, block):
                end = min(n, start + block)
                logits = self._model(
                    input_ids=input_ids[:, start:end],
                    past_key_values=fresh,
                    use_cache=True,
                    cache_position=torch.arange(start, end, device=input_ids.device),
                    attention_mask=torch.ones(1, end, dtype=torch.long, device=input_ids.device),
                ).logits
                entries += maker.entries(logits[0].float().cpu().numpy(), prompt_ids[start + 1 : end + 1])
        # Keep the filled cache only where the generation would have used one.
        return entries, (fresh if cache is not None else None)

    def _cache_for(self, prompt_ids: list[int], images_key: tuple[bytes, ...] = (), media: Any = None) -> Any:
        """The KV cache to continue from, cut back to the prefix it shares with ``prompt_ids``.

        With images: ``_prefill`` evaluates the prompt but its last token, so the image tokens
        it reads must all lie in that part, with the pixels of every image (the processor's
        outputs cover all images at once). The cache therefore keeps either all of the prompt's
        image tokens (made from these same images) or none of them. None is returned where
        that split cannot be made (an image token last; processor outputs that go with each token).
        """
        if not self.reuse_cache or not self._cache_usable:
            return None
        if media and (self._has_images(prompt_ids[-1:]) or per_token(media, len(prompt_ids))):
            return None
        from transformers import DynamicCache

        cache, held = self._cache, self._cache_ids
        common = 0
        if cache is not None:
            limit = min(len(held), len(prompt_ids) - 1)
            while common < limit and held[common] == prompt_ids[common]:
                common += 1
            token = self._vision.image_token_id if self._vision is not None else None
            if token is not None and token in prompt_ids:
                # Image tokens in the shared prefix stand for the cache's images, which may be
                # other pictures; and images still to read need all the prompt's image tokens.
                if images_key != self._cache_images or token in prompt_ids[common:]:
                    common = min(common, prompt_ids.index(token))
        try:
            if cache is None or common == 0 or not cache.is_croppable:
                return DynamicCache(config=self._model.config)
            extra = cache.get_seq_length() - common
            if extra > 0:
                cache.crop(-extra)  # transformers 5: a negative count removes that many tokens from the end
            return cache
        except Exception:  # a model whose cache cannot be cut: evaluate the whole prompt
            log.debug("KV cache reuse unavailable for %s", self.path.name, exc_info=True)
            return None

    def _prefill(self, cache: Any, prompt_ids: list[int], input_ids: Any, media: dict[str, Any] | None = None) -> None:
        """Put every prompt token but the last into ``cache``.

        ``generate`` then evaluates the last prompt token on its own whether or not the
        prefix was cached, so a repeated prompt with the same seed gives the same text
        (logits of a one-token batch differ in the last bits from a many-token batch).
        ``media``: the images' inputs, when image tokens are among the tokens evaluated here.
        """
        have = cache.get_seq_length()
        if have < len(prompt_ids) - 1:
            new = input_ids[:, have : len(prompt_ids) - 1]
            import torch

            positions = torch.arange(have, have + new.shape[-1], device=new.device)
            self._model(
                input_ids=new,
                past_key_values=cache,
                use_cache=True,
                cache_position=positions,
                attention_mask=torch.ones(1, len(prompt_ids) - 1, dtype=torch.long, device=new.device),
                **(media or {}),
            )

    def close(self) -> None:
        self._cache, self._cache_ids, self._cache_images = None, [], ()
        self._model = None
        self._vision = None
        self._tok = None
        import gc

        gc.collect()
