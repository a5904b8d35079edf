"""transformers loader: a Hugging Face model folder (``config.json`` + ``*.safetensors``).

Generation runs in a worker thread and streams through ``TextIteratorStreamer``;
a stopping criterion checks the caller's cancel event (and our own stop-string
event) at every step and counts the generated tokens.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from ..errors import GenerationError, ModelLoadError, PromptTooLongError
from ..params import SamplingParams
from .base import Backend, Chunk, LoadOptions, find_stop, held_back


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


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


class _Watch:
    """Stopping criterion: ends generation on cancel and counts generated tokens."""

    def __init__(self, prompt_len: int, events: tuple[threading.Event, ...]) -> None:
        self.prompt_len = prompt_len
        self.events = events
        self.generated = 0

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.generated = int(input_ids.shape[-1]) - self.prompt_len
        stop = any(e.is_set() for e in self.events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class TransformersBackend(Backend):
    name: ClassVar[str] = "transformers"
    supported_params: ClassVar[frozenset[str]] = frozenset({
        "max_tokens", "temperature", "top_p", "top_k", "min_p", "typical_p", "repeat_penalty",
        "seed", "do_sample", "stop",
    })
    option_fields: ClassVar[tuple[str, ...]] = ("n_ctx", "threads", "dtype", "device", "trust_remote_code")

    def __init__(self, model: Any, tokenizer: Any, path: Path, n_ctx: int, config: dict[str, Any]) -> None:
        self._model = model
        self._tok = tokenizer
        self.path = path
        self.n_ctx = n_ctx
        self.chat_template = getattr(tokenizer, "chat_template", None) or None
        self.metadata = {k: v for k, v in config.items() if isinstance(v, (str, int, float, bool))}

    @classmethod
    def load(cls, path: Path, options: LoadOptions) -> TransformersBackend:
        path = Path(path)
        config = check_hf_folder(path, trust_remote_code=options.trust_remote_code)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
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
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=options.trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, trust_remote_code=options.trust_remote_code, use_safetensors=True,
                device_map=None if device == "cpu" else device,
            )
        except Exception as exc:  # transformers raises many kinds; all mean "could not load"
            raise ModelLoadError(f"transformers could not load {path.name}: {exc}") from exc
        model.eval()
        trained = int(config.get("max_position_embeddings") or 0) or 2048
        n_ctx = min(options.n_ctx, trained) if options.n_ctx else trained
        return cls(model, tokenizer, path, n_ctx, config)

    def tokenize(self, text: str) -> list[int]:
        return list(self._tok(text, add_special_tokens=True)["input_ids"])

    def _generate_kwargs(self, params: SamplingParams, max_new_tokens: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "repetition_penalty": params.repeat_penalty,
        }
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
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

    def stream(self, prompt: str, params: SamplingParams, cancel: threading.Event) -> Iterator[Chunk]:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer, set_seed

        ids = self._tok(prompt, return_tensors="pt", add_special_tokens=True)
        prompt_len = int(ids["input_ids"].shape[-1])
        if prompt_len >= self.n_ctx:
            raise PromptTooLongError(prompt_len, self.n_ctx)
        max_new = min(params.max_tokens, self.n_ctx - prompt_len)
        set_seed(params.seed % 2**32)
        stop_event = threading.Event()
        watch = _Watch(prompt_len, (cancel, stop_event))
        streamer = TextIteratorStreamer(self._tok, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else self._tok.eos_token_id

        def run() -> None:
            try:
                with torch.inference_mode():
                    self._model.generate(
                        **{k: v.to(self._model.device) for k, v in ids.items()},
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([watch]),
                        pad_token_id=pad,
                        **self._generate_kwargs(params, max_new),
                    )
            except BaseException as exc:  # re-raised in the consumer below
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name="transformers-generate", daemon=True)
        worker.start()
        text, sent, counted = "", 0, 0
        stopped_by_string = False
        try:
            for piece in streamer:
                text += piece
                stop_at = find_stop(text, params.stop)
                if stop_at >= 0:
                    text = text[:stop_at]
                    stopped_by_string = True
                    stop_event.set()
                    break
                visible = len(text) - held_back(text, params.stop)
                if visible > sent:
                    n = watch.generated - counted
                    yield Chunk(text[sent:visible], n_tokens=n)
                    sent, counted = visible, counted + n
        finally:
            stop_event.set()  # also ends generation if our consumer went away
            worker.join()
        if failure:
            raise GenerationError(f"transformers failed while generating: {failure[0]}") from failure[0]
        if stopped_by_string:
            finish = "stop"
        elif cancel.is_set():
            finish = "cancelled"
        elif watch.generated >= max_new:
            finish = "length"
        else:
            finish = "stop"
        yield Chunk(text[sent:], n_tokens=watch.generated - counted, finish_reason=finish,  # type: ignore[arg-type]
                    prompt_tokens=prompt_len)

    def close(self) -> None:
        self._model = None
        self._tok = None
        import gc

        gc.collect()
