"""The generation service: one generation at a time per loaded model, taken fairly across users.

llama-cpp-python's ``Llama`` is not thread-safe, and a CPU has no room for two
generations anyway, so every request (Notebook, Chat, Compare, API) becomes a
:class:`GenerationJob` in one queue served by one worker thread. Each job
has its own cancel event: one user's Stop never stops another's generation,
and a consumer that goes away (closed tab, closed API connection) cancels
its own job.

The queue is fair between users: jobs are taken round-robin, the user served
longest ago first (one user's three queued jobs do not make another user's
single job wait behind all three); one user's own jobs run in the order sent.
Functions run on the generation thread (model loads, :meth:`Generator.call`)
keep their place in arrival order: jobs sent before a load run before it (on
the old model), jobs sent after it run after it. Without users (no log-in, no
API keys) every job is the same user's and the queue is first come first served.

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
from webui.generation.limits import NO_LIMITS, UserLimits, check_queued, check_tokens
from webui.loaders.base import Chunk, ParallelSlots, StreamExtras
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
    #: Who asked (the user's name; None: no log-in or API keys on this server).
    user: str | None = None

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

    def __init__(
        self,
        prepare: Prepare,
        params: SamplingParams,
        cancel: threading.Event | None = None,
        user: str | None = None,
        model: str | None = None,
    ) -> None:
        self.prepare = prepare
        #: The loaded model that runs it (None: the main one; see ``ModelManager.route``).
        self.model = model
        self.params = params
        self.cancel = cancel or threading.Event()
        #: Who asked (None: no log-in or API keys); the queue takes users' jobs in turn.
        self.user = user
        self.text = ""
        #: Set on the generation thread before the first token: the prompt as made for the model.
        self.prepared: Prepared | None = None
        self.stats: GenerationStats | None = None
        self.submitted_at = time.perf_counter()
        #: When the generation thread took the job (None: still waiting).
        self.started_at: float | None = None
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
        self.submitted_at = time.perf_counter()
        self.started_at: float | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # handed to the caller, who re-raises it
            self.error = exc
        finally:
            self.done.set()


#: Items of the queue: generation jobs and functions to run on the generation thread.
_Item = GenerationJob | _Task

#: How often a function waiting its turn on the generation thread reports its place (Generator.call).
_WAIT_REPORT_SECONDS = 0.5
#: Seconds a job (or a model load) is guessed to take before any has finished here.
_FIRST_GUESS_SECONDS = 10.0
#: How many finished jobs the wait estimates average over.
_ESTIMATE_WINDOW = 20


#: Tokens a running job must have written before its own speed is trusted for the time it has left.
_RATE_MIN_TOKENS = 8


def _seconds_to_max_tokens(job: GenerationJob) -> float:
    """At most how long ``job`` still writes: its tokens left to ``max_tokens`` at its speed so far
    (0 before it has written enough to tell its speed). An upper bound: the model may end sooner."""
    stats = job.stats
    if stats is None or stats.ttft_seconds is None or stats.completion_tokens < _RATE_MIN_TOKENS:
        return 0.0
    writing = stats.total_seconds - stats.ttft_seconds
    if writing <= 0:
        return 0.0
    rate = stats.completion_tokens / writing
    return max(0, job.params.max_tokens - stats.completion_tokens) / rate


def _next_item(pending: list[_Item], served: dict[str | None, int]) -> _Item:
    """The item to run next: a function at the head runs; otherwise, among the jobs sent before the
    next function, the oldest job of the user served longest ago (never served: first)."""
    if isinstance(pending[0], _Task):
        return pending[0]
    heads: dict[str | None, GenerationJob] = {}
    for item in pending:
        if isinstance(item, _Task):
            break  # jobs sent after a load wait for it, whoever sent them
        heads.setdefault(item.user, item)
    # dicts keep insertion order and min() keeps the first of equals: ties go to the earliest head
    return min(heads.values(), key=lambda job: served.get(job.user, -1))


class Generator:
    """The queue of generation jobs in front of the :class:`ModelManager`'s loaded model (fair across users)."""

    def __init__(self, models: ModelManager) -> None:
        self.models = models
        #: Guards the queue, the running item and the turns; notified when an item is queued.
        self._lock = threading.Condition()
        #: Waiting items in arrival order (the run order is chosen by :func:`_next_item`).
        self._pending: list[_Item] = []
        #: The turn number at which each user's last job started (round-robin: lowest goes first).
        self._served: dict[str | None, int] = {}
        self._turn = 0
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        #: Jobs generating now: one, or one per busy slot of a model that decodes several together.
        self._running: list[GenerationJob] = []
        self._active_task: _Task | None = None
        #: Whether the loaded model has been told the queue went idle since the last job.
        self._idle_told = True
        #: Stats of the last finished requests, newest last (for /v1/internal/requests and the curious).
        self.recent: deque[GenerationStats] = deque(maxlen=50)
        #: Wall-clock seconds of the last finished jobs and functions, for the wait estimates.
        self._job_seconds: deque[float] = deque(maxlen=_ESTIMATE_WINDOW)
        self._task_seconds: deque[float] = deque(maxlen=_ESTIMATE_WINDOW)

    @property
    def active(self) -> GenerationJob | None:
        """The job generating now (the first started, when several are)."""
        running = self._running
        return running[0] if running else None

    def running(self) -> list[GenerationJob]:
        """Every job generating now (several on a model with parallel slots)."""
        with self._lock:
            return list(self._running)

    def submit(
        self,
        prompt: str | None = None,
        params: SamplingParams | None = None,
        cancel: threading.Event | None = None,
        *,
        prepare: Prepare | None = None,
        user: str | None = None,
        limits: UserLimits | None = None,
        model: str | None = None,
    ) -> GenerationJob:
        """Queue a generation of ``prompt`` (raw text), or of what ``prepare`` makes for the model.

        ``model`` runs it (None: the main model; a name from ``ModelManager.route``).
        ``user`` sent it (None: no log-in); ``limits`` are that user's (raises
        :class:`~webui.errors.UserLimitError` for too many tokens, and
        :class:`~webui.errors.QuotaError` when the user already has as many jobs as allowed).
        """
        if prepare is None:
            if not prompt:
                raise EmptyPromptError()  # no loader can evaluate zero tokens (llama.cpp asserts on it)
            prepare = fixed_prompt(prompt)
        params = params or SamplingParams()
        limits = limits or NO_LIMITS
        check_tokens(params, limits)
        job = GenerationJob(prepare, params, cancel, user, model)
        self._ensure_worker()
        with self._lock:
            if limits.max_queued:
                mine = self._jobs_of(user)
                check_queued(len(mine), limits, self._done_in(mine[0]) if mine else 0.0)
            self._pending.append(job)
            self._lock.notify()
        return job

    def generate(self, prompt: str, params: SamplingParams | None = None) -> tuple[str, GenerationStats]:
        job = self.submit(prompt, params)
        text = job.result()
        assert job.stats is not None
        return text, job.stats

    def call(self, fn: Callable[[], Any], waiting: Callable[[int, float], None] | None = None) -> Any:
        """Run ``fn`` on the generation thread, in turn with the queued jobs, and return its result.

        Model loads go through here so the thread that loads a llama.cpp model is the
        one that runs it: llama.cpp's OpenMP worker threads belong to the thread that
        first used them; decoding on another thread ran at about 80-85% of the speed in
        isolation, and at a third once two threads had decoded (bench/results/threads.txt).

        ``waiting(ahead, seconds)`` is told, at once and then twice a second until ``fn`` starts, how many
        requests run or wait before it and about how many seconds until it starts (a model load clicked
        during a reply waits for that reply: the Model tab says so instead of a bare spinner).
        """
        if threading.current_thread() is self._worker:
            return fn()
        task = _Task(fn)
        self._ensure_worker()
        with self._lock:
            self._pending.append(task)
            self._lock.notify()
        if waiting is not None:
            place = self._place_of(task)
            while place is not None:  # None: started (fn reports its own progress) or next with nothing running
                try:
                    waiting(*place)
                except Exception:  # a report that cannot be shown (the page went away) must not lose the result
                    log.warning("Stopped reporting the wait of a queued call", exc_info=True)
                    break
                if task.done.wait(_WAIT_REPORT_SECONDS):
                    break
                place = self._place_of(task)
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    def cancel_all(self) -> int:
        """Stop every generation, running or waiting (the server is stopping): each ends as a Stop ends it,
        its text so far saved by whoever streams it. How many were told."""
        with self._lock:
            jobs = [*self._running, *(item for item in self._pending if isinstance(item, GenerationJob))]
        for job in jobs:
            job.cancel.set()
        return len(jobs)

    def waiting(self) -> int:
        """Jobs (and model loads) waiting behind the running one."""
        with self._lock:
            return len(self._pending)

    def position(self, job: GenerationJob) -> int | None:
        """Where ``job`` stands: 0 running, k the k-th to run after the running one, None finished
        (or cancelled while it waited).

        A projection: a job another user sends later may still go before it (their turn comes first).
        """
        if job.finished:
            return None
        with self._lock:
            if job in self._running:
                return 0
            if job.cancel.is_set():
                return None  # leaves the queue without running
            for k, item in enumerate(self._run_order(), 1):
                if item is job:
                    return k
        return 0  # taken off the queue by the generation thread, about to be marked running

    def ahead_of(self, job: GenerationJob) -> int:
        """How many requests (and model loads) run before ``job``: the running one and those before it in
        line. 0: it runs, has finished, or is next with nothing running."""
        with self._lock:
            if job.finished or job in self._running or job.cancel.is_set():
                return 0
            order = self._run_order()
            if job not in order:
                return 0  # taken off the queue by the generation thread, about to run
            return self._ahead_in(order, job)

    def _place_of(self, task: _Task) -> tuple[int, float] | None:
        """How many requests (and loads) run or wait before ``task`` and the seconds until it starts, about;
        None once it has started, or when nothing is before it."""
        now = time.perf_counter()
        with self._lock:
            order = self._run_order()
            if task.started_at is not None or task not in order:
                return None
            before = order[: order.index(task)]
            ahead = self._ahead_in(order, task)
            if not ahead:
                return None
            # a load starts once every running request has ended (with parallel slots, the longest of them)
            running: list[_Item] = [*self._running] or ([self._active_task] if self._active_task else [])
            left = max((self._remaining(item, now) for item in running), default=0.0)
            return ahead, left + sum(self._guess(item) for item in before)

    def queue_view(self, viewer: str | None, is_admin: bool) -> list[dict[str, Any]]:
        """The queue as ``viewer`` may see it, running item first: position, whose (others' names only
        for admins), state, seconds waited and the estimated seconds until it starts."""
        now = time.perf_counter()
        entries: list[dict[str, Any]] = []
        with self._lock:
            running: _Item | None = self.active if self.active is not None else self._active_task
            ahead = self._remaining(running, now)
            now_running: list[_Item] = list(self._running)
            if not now_running and self._active_task is not None:
                now_running.append(self._active_task)
            for item in now_running:
                entries.append(self._entry(item, 0, "running", 0.0, viewer, is_admin, now))
            for k, item in enumerate(self._run_order(), 1):
                entries.append(self._entry(item, k, "waiting", ahead, viewer, is_admin, now))
                ahead += self._guess(item)
        return entries

    # -- inside (callers hold self._lock) ----------------------------------------------------------------

    def _ahead_in(self, order: list[_Item], item: _Item) -> int:
        """What runs before ``item``, which waits in ``order``: the items before it and the running ones."""
        return order.index(item) + len(self._running) + (self._active_task is not None)

    def _run_order(self) -> list[_Item]:
        """The waiting items in the order they would run if nothing else were sent (cancelled jobs left out:
        they leave the queue at once)."""
        pending = list(self._pending)
        served = dict(self._served)
        turn = self._turn
        order: list[_Item] = []
        while pending:
            item = _next_item(pending, served)
            pending.remove(item)
            if isinstance(item, GenerationJob):
                if item.cancel.is_set():
                    continue
                turn += 1
                served[item.user] = turn
            order.append(item)
        return order

    def _jobs_of(self, user: str | None) -> list[GenerationJob]:
        """``user``'s jobs running or waiting, the first to be done first (cancelled ones do not count)."""
        mine = [job for job in self._running if job.user == user and not job.finished]
        return mine + [item for item in self._run_order() if isinstance(item, GenerationJob) and item.user == user]

    def _done_in(self, job: GenerationJob) -> float:
        """Estimated seconds until ``job`` is done (running or waiting)."""
        now = time.perf_counter()
        running: _Item | None = self.active if self.active is not None else self._active_task
        seconds = self._remaining(running, now)
        if job in self._running:
            return seconds
        for item in self._run_order():
            seconds += self._guess(item)
            if item is job:
                break
        return seconds

    def _guess(self, item: _Item) -> float:
        """Seconds ``item`` is expected to take: the mean of the last ones of its kind here."""
        done = self._task_seconds if isinstance(item, _Task) else self._job_seconds
        return sum(done) / len(done) if done else _FIRST_GUESS_SECONDS

    def _remaining(self, running: _Item | None, now: float) -> float:
        if running is None or running.started_at is None:
            return 0.0
        left = self._guess(running) - (now - running.started_at)
        if left <= 0 and isinstance(running, GenerationJob):
            # longer than the usual here (a long story): its own speed and tokens left say more than "about 0 s"
            left = _seconds_to_max_tokens(running)
        return max(0.0, left)

    def _entry(
        self, item: _Item, position: int, state: str, wait: float, viewer: str | None, is_admin: bool, now: float
    ) -> dict[str, Any]:
        if isinstance(item, _Task):
            kind, owner, mine = "model load", None, False
        else:
            kind, mine = "generation", viewer is not None and item.user == viewer
            owner = item.user if (is_admin or mine or item.user is None) else "another user"
        started = item.started_at if item.started_at is not None else now
        return {
            "position": position,
            "kind": kind,
            "user": owner,
            "mine": mine,
            "state": state,
            "waited_seconds": round(started - item.submitted_at, 1),
            "estimated_wait_seconds": round(wait, 1),
        }

    # -- the generation thread ---------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name="generator", daemon=True)
                self._worker.start()

    def _take(self, timeout: float | None = None) -> _Item | None:
        """Wait for an item and take the one whose turn it is (marked running under the same lock, so
        :meth:`position` never finds a job neither waiting nor running). None: ``timeout`` passed first."""
        with self._lock:
            while not self._pending:
                if not self._lock.wait(timeout) and timeout is not None and not self._pending:
                    return None
            return self._take_locked(_next_item(self._pending, self._served))

    def _take_joinable(self, loaded: LoadedModel) -> GenerationJob | None:
        """The next job, if the next item is a job for ``loaded`` (a model load, or a job for another model,
        waits for the running jobs to end)."""
        with self._lock:
            if not self._pending:
                return None
            item = _next_item(self._pending, self._served)
            if isinstance(item, _Task) or not self.models.goes_to(item.model, loaded):
                return None
            taken = self._take_locked(item)
            assert isinstance(taken, GenerationJob)
            return taken

    def _take_locked(self, item: _Item) -> _Item:
        self._pending.remove(item)
        item.started_at = time.perf_counter()
        if isinstance(item, _Task):
            self._active_task = item
        else:
            if not item.cancel.is_set():  # a job cancelled in the queue does not use up its user's turn
                self._turn += 1
                self._served[item.user] = self._turn
            self._running.append(item)
            self._idle_told = False
        return item

    def _serve(self) -> None:
        while True:
            timeout = None if self._idle_told else _IDLE_SECONDS
            expiry = self.models.next_expiry()
            if expiry is not None:
                timeout = expiry + 0.05 if timeout is None else min(timeout, expiry + 0.05)
            item = self._take(timeout=timeout)
            if item is None:
                if not self._idle_told:
                    self._tell_idle()
                self._unload_idle()
                continue
            if isinstance(item, _Task):
                item.run()
                with self._lock:
                    self._active_task = None
                    assert item.started_at is not None
                    self._task_seconds.append(time.perf_counter() - item.started_at)
                continue
            self._serve_job(item)
            self._unload_idle()

    def _unload_idle(self) -> None:
        """Unload the models whose time-to-live without requests has passed (``--model-ttl``)."""
        try:
            self.models.unload_idle()
        except Exception:
            log.exception("Unloading an idle model failed")

    def _serve_job(self, job: GenerationJob) -> None:
        """Run ``job``: in the model's slots with every job that can join while it runs, or alone."""
        try:
            with self.models.use(job.model) as loaded:
                slots = loaded.backend.parallel()
                if slots is None:
                    self._guarded(job, lambda: self._run_alone(job, loaded, self._begin(job, loaded)))
                    return
                alone = self._run_in_slots(job, loaded, slots)
                if alone is not None:
                    job, begun = alone
                    self._guarded(job, lambda: self._run_alone(job, loaded, begun))
        except WebUIError as exc:  # no model loaded, or not the one asked for (or it failed to load)
            self._fail(job, exc)
        except Exception as exc:  # a fault of ours: end every running job with it, keep serving
            for running in self.running():
                self._fail(running, exc)

    def _fail(self, job: GenerationJob, exc: BaseException) -> None:
        """End ``job`` with ``exc`` (ours and unexpected ones logged and named as a generation failure)."""
        if not isinstance(exc, WebUIError):
            log.error("Generation failed", exc_info=exc)
            exc = GenerationError(f"Generation failed: {type(exc).__name__}: {exc}")
        job._put(exc)
        self._finish(job)

    def _guarded(self, job: GenerationJob, run: Callable[[], None]) -> None:
        """Run ``run`` for ``job``; whatever it raises goes to the job's consumer, then the job ends."""
        try:
            run()
        except Exception as exc:  # keep serving others; the requester sees the error
            self._fail(job, exc)
        finally:
            self._finish(job)

    def _finish(self, job: GenerationJob) -> None:
        if job.finished:
            return
        with self._lock:
            if job.stats is not None:
                self.recent.append(job.stats)
                if job.stats.finish_reason != "cancelled" and job.started_at is not None:
                    self._job_seconds.append(time.perf_counter() - job.started_at)
        job._end()
        with self._lock:
            # After _end: a finished job no longer counts against its user's limit, so the
            # user's next request is never refused in the moment between the two.
            if job in self._running:
                self._running.remove(job)

    def _tell_idle(self) -> None:
        """The queue has been empty a while: let the loaded model do its housekeeping (warm states)."""
        self._idle_told = True
        for loaded in self.models.loaded_models():
            slots = loaded.backend.parallel()
            if slots is not None:
                try:
                    slots.idle()
                except Exception:
                    log.exception("The idle housekeeping of %s failed", loaded.name)

    def _run_in_slots(
        self, first: GenerationJob, loaded: LoadedModel, slots: ParallelSlots
    ) -> tuple[GenerationJob, _Begun] | None:
        """Decode ``first`` and every job that joins while slots are free, until all have ended.

        Returns a job that has to run alone (images, echo, sampler views) with its preparation: it
        waits until the slots have drained, and no later job overtakes it.
        """
        in_slots: list[GenerationJob] = []
        job: GenerationJob | None = first
        while True:
            if job is not None:
                begun = self._start_in_slot(job, loaded, slots)
                if begun is not None:
                    if slots.busy():
                        self._drain(slots, in_slots)
                    return job, begun
                if not job.finished:
                    in_slots.append(job)
            if slots.busy():
                # One job joins per step: a step reads one prompt chunk anyway, and starting every waiting
                # job first (tokenizing, fitting, a sampler chain each) delayed the first one's first token.
                self._step(slots, in_slots)
            elif job is None:
                return None
            job = self._take_joinable(loaded) if slots.free() > 0 else None

    def _drain(self, slots: ParallelSlots, in_slots: list[GenerationJob]) -> None:
        while slots.busy():
            self._step(slots, in_slots)

    def _step(self, slots: ParallelSlots, in_slots: list[GenerationJob]) -> None:
        try:
            slots.step()
        except Exception as exc:  # one decode for all: every job in it sees the error
            slots.reset()
            for job in in_slots:
                if not job.finished:
                    self._fail(job, exc)
        in_slots[:] = [job for job in in_slots if not job.finished]

    def _start_in_slot(self, job: GenerationJob, loaded: LoadedModel, slots: ParallelSlots) -> _Begun | None:
        """Prepare ``job`` and start it in a free slot. Returns its preparation when it has to run alone."""
        try:
            begun = self._begin(job, loaded)
            if begun is None:
                self._finish(job)  # cancelled before it started
                return None
            if not slots.can_take(begun.prepared.extras):
                return begun
            started = time.perf_counter()
            slots.start(
                begun.prepared.prompt,
                begun.params,
                job.cancel,
                begun.prepared.extras,
                lambda chunk: self._deliver(job, chunk, started),
            )
        except Exception as exc:
            self._fail(job, exc)
        return None

    def _begin(self, job: GenerationJob, loaded: LoadedModel) -> _Begun | None:
        """The job's stats and preparation for ``loaded`` (on this thread); None when it was cancelled."""
        params = job.params
        if params.seed == -1:
            params = params.model_copy(update={"seed": random.randint(0, 2**31 - 1)})
        started = time.perf_counter()
        stats = GenerationStats(
            model=loaded.name,
            loader=loaded.loader,
            seed=params.seed,
            queue_seconds=started - job.submitted_at,
            user=job.user,
        )
        job.stats = stats
        if job.cancel.is_set():
            stats.finish_reason = "cancelled"
            return None
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
        return _Begun(params, prepared)

    def _run_alone(self, job: GenerationJob, loaded: LoadedModel, begun: _Begun | None) -> None:
        if begun is None:
            return
        started = time.perf_counter()
        for chunk in loaded.backend.stream(begun.prepared.prompt, begun.params, job.cancel, begun.prepared.extras):
            self._deliver(job, chunk, started)

    def _deliver(self, job: GenerationJob, chunk: Chunk, started: float) -> None:
        """Hand a chunk to the job's consumer, with its stats; the last chunk ends the job."""
        stats = job.stats
        assert stats is not None
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
        if chunk.finish_reason is not None:
            self._finish(job)


@dataclass
class _Begun:
    """A job's sampling parameters (with its prompt's stops and grammar) and its prepared prompt."""

    params: SamplingParams
    prepared: Prepared


#: Seconds the queue stays empty before the loaded model is told it is idle (warm states are saved).
_IDLE_SECONDS = 2.0


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
