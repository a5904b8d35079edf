"""The generation service: one generation at a time per loaded model, first come first served.

llama-cpp-python's ``Llama`` is not thread-safe, and a CPU has no room for two
generations anyway, so every request (Notebook, Chat, Compare, API) becomes a
:class:`GenerationJob` in one FIFO queue served by one worker thread. Each job
has its own cancel event: one user's Stop never stops another's generation,
and a consumer that goes away (closed tab, closed API connection) cancels
its own job.

A job carries a *prepare* step, not a finished prompt: the worker runs it right
before generating, with the model that will run the job. Rendering the chat
template, counting tokens and truncating therefore always happen against the
right model (a load queued between "send" and the generation cannot make a
prompt for the wrong one), on the thread that owns the model (a ``Llama`` is
never tokenizing on one thread while it decodes on another). What the
preparation found (prompt, token count, truncation) travels back on the job.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from webui.errors import EmptyPromptError, GenerationError, SchemaError, UnsupportedFeatureError, WebUIError
from webui.loaders.base import Chunk, StreamExtras
from webui.models.manager import LoadedModel, ModelManager
from webui.params import SamplingParams
from webui.structured.gbnf import schema_grammar
from webui.structured.schema import check_schema

log = logging.getLogger(__name__)


@dataclass
class GenerationStats:
    model: str
    loader: str
    seed: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    queue_seconds: float = 0.0
    #: Seconds from the start of this job's turn to its first generated text.
    ttft_seconds: float | None = None
    total_seconds: float = 0.0
    finish_reason: str = "stop"
    #: Tokens cut from the start of a raw prompt longer than ``truncation_length`` (0: none).
    prompt_cut: int = 0

    @property
    def tokens_per_second(self) -> float:
        """Generation speed: tokens after the first over the time after the first."""
        if self.ttft_seconds is None or self.completion_tokens < 2:
            return 0.0
        span = self.total_seconds - self.ttft_seconds
        return (self.completion_tokens - 1) / span if span > 0 else 0.0

    def summary(self) -> str:
        ttft = f"{self.ttft_seconds:.2f} s" if self.ttft_seconds is not None else "-"
        reason = {"stop": "finished", "length": "reached the token limit", "cancelled": "stopped"}.get(
            self.finish_reason, self.finish_reason
        )
        return (
            f"{self.completion_tokens} tokens, {self.tokens_per_second:.1f} tokens/s, first token {ttft}, "
            f"prompt {self.prompt_tokens} tokens, {reason}, seed {self.seed}"
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "tokens_per_second": self.tokens_per_second}


@dataclass
class Prepared:
    """A prompt made for one model by a job's prepare step, on the generation thread."""

    prompt: str
    #: Stop strings of this prompt (a chat transcript's "\nName:"), added to the sampling ones.
    stop: list[str] = field(default_factory=list)
    #: Tokens in ``prompt`` as the model counts them (None: not counted).
    tokens: int | None = None
    #: Whether the loader may cut the prompt from the front to ``truncation_length``. Raw text
    #: (Notebook, /v1/completions) may be; a chat prompt never is (that would drop the system
    #: prompt and move the prefix every turn): the chat budget truncates whole turns instead.
    front_cut: bool = True
    #: What the preparation wants to hand back to its caller (a chat turn's ``Prompt``).
    detail: Any = None
    #: A GBNF grammar for this request (a tool call, a JSON schema), used instead of the
    #: sampling parameters' ``grammar_string``.
    grammar: str | None = None
    #: Logprobs, a lazy grammar's triggers, the messages for a chat-only server (see ``StreamExtras``).
    extras: StreamExtras | None = None


#: Makes the prompt for the model that will run the job. Runs on the generation thread.
Prepare = Callable[[LoadedModel, SamplingParams], Prepared]


def fixed_prompt(prompt: str) -> Prepare:
    """A prepare step for raw text: the prompt is the text, for whatever model runs it."""
    return lambda loaded, params: Prepared(prompt)


_DONE = object()


class GenerationJob:
    """One request. Iterate it to stream text chunks; ``prepared`` and ``stats`` travel on it."""

    def __init__(self, prepare: Prepare, params: SamplingParams, cancel: threading.Event | None = None) -> None:
        self.prepare = prepare
        self.params = params
        self.cancel = cancel or threading.Event()
        self.text = ""
        #: Set on the generation thread before the first token: the prompt as made for the model.
        self.prepared: Prepared | None = None
        self.stats: GenerationStats | None = None
        self.submitted_at = time.perf_counter()
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._finished = threading.Event()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def __iter__(self) -> Iterator[Chunk]:
        ended = False
        try:
            while True:
                item = self._items.get()
                if item is _DONE:
                    ended = True
                    return
                if isinstance(item, BaseException):
                    ended = True
                    raise item
                yield item
        finally:
            if not ended:
                # The consumer stopped listening (closed tab, dropped connection): stop working for it.
                self.cancel.set()

    def result(self) -> str:
        """Wait for the whole text."""
        for _ in self:
            pass
        return self.text

    # called by the worker
    def _put(self, item: object) -> None:
        self._items.put(item)

    def _end(self) -> None:
        self._finished.set()
        self._items.put(_DONE)


class _Task:
    """A function run on the generation thread (model loads), with its result or error handed back."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # handed to the caller, who re-raises it
            self.error = exc
        finally:
            self.done.set()


class Generator:
    """FIFO queue of generation jobs in front of the :class:`ModelManager`'s loaded model."""

    def __init__(self, models: ModelManager) -> None:
        self.models = models
        self._queue: queue.Queue[GenerationJob] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.active: GenerationJob | None = None
        #: Stats of the last finished requests, newest last (for /v1/internal/requests and the curious).
        self.recent: deque[GenerationStats] = deque(maxlen=50)

    def submit(
        self,
        prompt: str | None = None,
        params: SamplingParams | None = None,
        cancel: threading.Event | None = None,
        *,
        prepare: Prepare | None = None,
    ) -> GenerationJob:
        """Queue a generation of ``prompt`` (raw text), or of what ``prepare`` makes for the model."""
        if prepare is None:
            if not prompt:
                raise EmptyPromptError()  # no loader can evaluate zero tokens (llama.cpp asserts on it)
            prepare = fixed_prompt(prompt)
        job = GenerationJob(prepare, params or SamplingParams(), cancel)
        self._ensure_worker()
        self._queue.put(job)
        return job

    def generate(self, prompt: str, params: SamplingParams | None = None) -> tuple[str, GenerationStats]:
        job = self.submit(prompt, params)
        text = job.result()
        assert job.stats is not None
        return text, job.stats

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the generation thread, in turn with the queued jobs, and return its result.

        Model loads go through here so the thread that loads a llama.cpp model is the
        one that runs it: llama.cpp's OpenMP worker threads belong to the thread that
        first used them; decoding on another thread ran at about 80-85% of the speed in
        isolation, and at a third once two threads had decoded (bench/results/threads.txt).
        """
        if threading.current_thread() is self._worker:
            return fn()
        task = _Task(fn)
        self._ensure_worker()
        self._queue.put(task)  # type: ignore[arg-type]
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def waiting(self) -> int:
        """Jobs waiting behind the running one."""
        return self._queue.qsize()

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name="generator", daemon=True)
                self._worker.start()

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if isinstance(job, _Task):
                job.run()
                continue
            self.active = job
            try:
                self._run(job)
            except WebUIError as exc:
                job._put(exc)
            except Exception as exc:  # keep serving others; the requester sees the error
                log.exception("Generation failed")
                job._put(GenerationError(f"Generation failed: {type(exc).__name__}: {exc}"))
            finally:
                self.active = None
                if job.stats is not None:
                    self.recent.append(job.stats)
                job._end()

    def _run(self, job: GenerationJob) -> None:
        params = job.params
        if params.seed == -1:
            params = params.model_copy(update={"seed": random.randint(0, 2**31 - 1)})
        started = time.perf_counter()
        current = self.models.current
        stats = GenerationStats(
            model=current.name if current else "",
            loader=current.loader if current else "",
            seed=params.seed,
            queue_seconds=started - job.submitted_at,
        )
        job.stats = stats
        if job.cancel.is_set():
            stats.finish_reason = "cancelled"
            return
        with self.models.use() as loaded:
            stats.model, stats.loader = loaded.name, loaded.loader
            prepared = job.prepare(loaded, params)
            if not prepared.prompt:
                raise EmptyPromptError()
            job.prepared = prepared
            updates: dict[str, Any] = {}
            if prepared.stop:
                updates["stop"] = [*params.stop, *prepared.stop]
            if not prepared.front_cut:
                updates["truncation_length"] = 0
            if prepared.grammar is not None:
                updates["grammar_string"] = prepared.grammar
            elif params.json_schema.strip():
                updates["grammar_string"] = _json_schema_grammar(params.json_schema, loaded)
            if updates:
                params = params.model_copy(update=updates)
            for chunk in loaded.backend.stream(prepared.prompt, params, job.cancel, prepared.extras):
                now = time.perf_counter()
                if chunk.text:
                    if stats.ttft_seconds is None:
                        stats.ttft_seconds = now - started
                    job.text += chunk.text
                stats.completion_tokens += chunk.n_tokens
                stats.total_seconds = now - started
                if chunk.finish_reason is not None:
                    stats.finish_reason = chunk.finish_reason
                    stats.prompt_tokens = chunk.prompt_tokens or 0
                    stats.prompt_cut = chunk.prompt_cut
                job._put(chunk)


def _json_schema_grammar(text: str, loaded: LoadedModel) -> str:
    """The grammar of the ``json_schema`` parameter, refused clearly where it cannot apply."""
    if not loaded.backend.capabilities.grammar:
        raise UnsupportedFeatureError(
            f"The {loaded.loader} loader cannot constrain the output to a JSON schema (no grammar support): "
            "clear the JSON schema box or use a llama.cpp model."
        )
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise SchemaError(f"json_schema is not valid JSON: {exc}.") from exc
    return schema_grammar(check_schema(schema, "json_schema"))
