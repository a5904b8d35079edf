"""Parallel decoding slots for the llama.cpp loader: several requests decoded together.

One llama.cpp context holds ``n`` sequences (``n_seq_max``), one per *slot*. Each step builds one
``llama_batch`` with the next token of every slot that is generating and a chunk of the prompt of
a slot that is still reading its prompt, decodes it once, then samples each generating slot's
token from its own row of logits with its own sampler chain (seed, penalties, grammar). On a CPU
one decode of 4 tokens costs little more than one of a single token (the weights are read once),
so 4 streams together run at 1.4-2x the tokens/s of one.

- **Continuous batching**: a request joins at the next step; one that ends (stop string, end of
  text, token limit, cancel) frees its slot at once.
- **Prefix reuse per slot**: a slot keeps the tokens its sequence holds after a request ends; a new
  request goes to the free slot whose cached tokens share the longest prefix with its prompt, and
  only the rest is evaluated (a chat's next turn re-reads only the new message).
- **Chunked prompt evaluation**: while other slots generate, a new prompt is read ``chunk`` tokens
  per step, so their streams slow down instead of freezing for the whole prompt.
- **Prompt lookup** (``SamplingParams.prompt_lookup``): a slot proposes the tokens that followed the
  last n-gram where it occurred before in its prompt or reply, evaluates them with its next token in
  the same step and keeps those its sampler would have drawn anyway; the text is the one it writes
  without them (greedy: identical), in fewer steps when the reply copies its input.
- **Draft model** (``draft``, see ``llama_draft.py``): a smaller model with the same vocabulary proposes
  the drafts instead, for every request that does not ask for prompt lookup; kept the same way.
- **Warm states** (``warm``): a long prefix a slot holds can be saved to disk when the server goes
  idle and loaded into a slot again later, even after a restart, instead of being evaluated anew.

As in the one-sequence path, a prompt's last token is evaluated on its own, in a generation step:
the first token is drawn from logits made the same way whether the prompt was cached or not.
"""

from __future__ import annotations

import codecs
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from webui.errors import GenerationError
from webui.loaders.base import Chunk, FinishReason, StopStringFilter, StreamExtras, TokenLogprob
from webui.loaders.lazy import LazyTrigger
from webui.loaders.llama_sampling import build_sampler
from webui.loaders.logprobs import LogprobMaker
from webui.params import SamplingParams

if TYPE_CHECKING:
    import numpy as np

    from webui.loaders.llama_draft import DraftModel

log = logging.getLogger(__name__)

#: Prompt tokens a slot reads per step. Chunks start at multiples of it, so a prompt's tokens are read
#: in the same batches whatever was cached before (see ``SlotEngine.start``).
DEFAULT_CHUNK = 256
#: Most tokens in one generation decode (slots' next tokens and drafts): narrow enough that llama.cpp's CPU
#: kernels compute each row as they do for a single token (measured on gemma-3's Q4_K weights: batches of
#: 1-7 tokens give bit-identical rows, 8 and more do not). More ready slots take several decodes.
DECODE_TOKENS = 7
#: The n-gram sizes prompt lookup matches (longest first, down to the shortest).
LOOKUP_NGRAM = 3
LOOKUP_NGRAM_MIN = 3
#: Most steps without drafts after a run of wrong ones, and most draft tokens in one step (``_take_tokens``).
MAX_REST = 32
MAX_DRAFTS = 16
#: Fewest draft tokens a request may try after a step whose drafts were partly right (a decode of 2 or 3 tokens
#: costs about as much as one of 4 here, see ``DecodeCosts``), and the window a request starts with.
MIN_WINDOW = 3
FIRST_WINDOW = 4
#: What a decode of 1..7 tokens costs against one of a single token, until this model's own are measured
#: (llama.cpp's CPU kernels on x86, measured 2026-12-04 with one sequence, quantized weights, 15 decodes each:
#: SmolLM2 1, 1.97, 2.74, 2.82, 3.59, 3.63, 4.43; gemma-3 1, 2.38, 3.77, 2.92, 4.25, 3.49, 5.10).
PRIOR_COSTS = (1.0, 2.4, 3.8, 2.9, 4.25, 3.6, 5.1)  # the dearer of the two, width by width


class WarmStates(Protocol):
    """A disk store of sequence states (``webui.loaders.warm_state.WarmStore``)."""

    def match_length(self, tokens: Sequence[int]) -> int: ...
    def restore(self, ctx: Any, seq_id: int, tokens: Sequence[int]) -> int: ...
    def save(self, ctx: Any, seq_id: int, tokens: Sequence[int]) -> bool: ...


@dataclass
class _Run:
    """One request in a slot."""

    prompt: list[int]
    params: SamplingParams
    cancel: threading.Event
    emit: Callable[[Chunk], None]
    max_tokens: int
    prompt_cut: int
    sampler: Any
    out: StopStringFilter
    decoder: Any
    special: bool
    lazy: LazyTrigger | None
    maker: LogprobMaker | None
    #: Index of the next prompt token to evaluate while reading the prompt (all but the last one).
    read: int = 0
    #: The token to evaluate in the next generation step (the prompt's last, then each drawn one).
    next_token: int | None = None
    generated: list[int] = field(default_factory=list)
    #: Draft tokens evaluated in this step (prompt lookup).
    drafts: list[int] = field(default_factory=list)
    #: Steps in a row whose first draft token was wrong.
    misses: int = 0
    #: Steps left without drafts: after wrong drafts, the next try waits longer each time (``MAX_REST``).
    rest: int = 0
    #: Most draft tokens the next step may try (grows while drafts are right, see ``_take_tokens``).
    window: int = FIRST_WINDOW


class Slot:
    """One sequence of the context: what it holds, and the request it is running (if any)."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        #: The tokens whose keys and values the sequence holds, positions 0..len-1.
        self.cached: list[int] = []
        self.run: _Run | None = None
        #: Step number of its last use (the least recently used free slot is reused first).
        self.used = 0
        #: ``cached`` was saved to the warm store as it is (nothing to save when idle).
        self.saved = False
        #: Leading positions read as whole prompt chunks (a multiple of the chunk): their keys and values
        #: are exactly those a fresh read of any prompt starting with these tokens leaves.
        self.exact = 0
        #: Where the last prompt read ended (the same prompt again may reuse all of it), None: unknown.
        self.body_end: int | None = None


class DecodeCosts:
    """How long a generation decode of 1..``most`` tokens takes, measured as they run, to choose how many draft
    tokens a step holds.

    On a CPU a decode of several tokens is not nearly as cheap as the weights read once would suggest: each
    token's row of logits is computed on its own, and llama.cpp's kernels handle some widths better than others.
    Measured here, two tokens cost twice one, and three cost nearly what four do (``PRIOR_COSTS``), so one or two
    draft tokens can only lose, and a width of 4 or 6 buys more than 3, 5 or 7.

    A width's cost is the median of its newest ``KEEP`` decodes against that of single tokens, once it has
    ``SAMPLES``; until then, ``PRIOR_COSTS`` scaled by how the measured widths compare with their priors (the
    priors were measured on one CPU; where wide decodes are cheaper, an unmeasured width likely is too). The
    first decode of each width is not kept: llama.cpp sizes its buffers for a new width then, and it took
    2.5-3 x its later time (gemma-3: 113 ms, then 34-43 ms). A width not decoded for ``STALE`` decodes forgets
    its measures and is tried again at its (scaled) prior cost, so one slow measure (another process on the
    machine) cannot keep it from being chosen for good.
    """

    SAMPLES = 3
    KEEP = 7
    STALE = 256

    def __init__(self, most: int) -> None:
        assert most <= len(PRIOR_COSTS)
        self.most = most
        self._samples: list[deque[float]] = [deque(maxlen=self.KEEP) for _ in range(most + 1)]
        self._median = [0.0] * (most + 1)
        self._seen = [0] * (most + 1)
        #: Number of the decode that gave each width's newest kept measure.
        self._last = [0] * (most + 1)
        self._decodes = 0

    def observe(self, width: int, seconds: float) -> None:
        if not 1 <= width <= self.most:
            return
        self._decodes += 1
        self._seen[width] += 1
        if self._seen[width] == 1:
            return  # the first decode of this width: llama.cpp's buffers are sized for it, not a measure
        if self._decodes - self._last[width] > self.STALE:
            self._samples[width].clear()
        self._samples[width].append(seconds)
        self._median[width] = statistics.median(self._samples[width])
        self._last[width] = self._decodes

    def _measured(self, width: int) -> float | None:
        if len(self._samples[width]) < self.SAMPLES or self._decodes - self._last[width] > self.STALE:
            return None
        return self._median[width]

    def cost(self, width: int) -> float:
        """A decode of ``width`` tokens against one of a single token: measured, or else the prior scaled as the
        widths measured so far compare with theirs."""
        one = self._measured(1)
        if not one:
            return PRIOR_COSTS[width - 1]
        it = self._measured(width)
        if it is not None:
            return it / one
        return PRIOR_COSTS[width - 1] * self._prior_scale(one)

    def _prior_scale(self, one: float) -> float:
        """The median of measured / prior over the widths measured (1: none yet). The priors are one machine's:
        on a CPU with AVX-512 (2026-12-04) gemma-3's widths cost 1, 1.2, 1.96, 1.71, 2.46, 2.22, 2.95, well under
        them, and with the priors as they were, width 4 was measured (1.8) and width 6, the cheapest per token
        there, never tried (its prior, 3.6, looked worse)."""
        ratios = [
            measured / one / PRIOR_COSTS[w - 1]
            for w in range(2, self.most + 1)
            if (measured := self._measured(w)) is not None
        ]
        return statistics.median(ratios) if ratios else 1.0

    def best_drafts(self, width: int, most: int) -> int:
        """How many of ``most`` draft tokens to add to a decode of ``width`` tokens: the most tokens per cost,
        should they all be right (whether they are likely right is the window's business, see ``_take_tokens``)."""
        most = max(0, min(most, self.most - width))
        return max(range(most + 1), key=lambda d: ((width + d) / self.cost(width + d), -d))


class SlotEngine:
    """The slots of one loaded model; all calls come from the generation thread."""

    def __init__(
        self,
        llm: Any,
        n_slots: int,
        n_ctx: int,
        eog: Sequence[int],
        *,
        chunk: int = DEFAULT_CHUNK,
        warm: WarmStates | None = None,
        draft: DraftModel | None = None,
        draft_max: int = 0,
    ) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self._llm = llm
        self._lib = llama_cpp
        self.n_ctx = n_ctx
        self._eog = frozenset(eog)
        self._eog_list = list(eog)
        self.slots = [Slot(i) for i in range(n_slots)]
        self._n_batch = int(llm.n_batch)
        self._chunk = max(1, min(chunk, self._n_batch))
        self._room = max(self._chunk, DECODE_TOKENS)  # a prompt chunk, or a generation batch
        self._batch = _internals.LlamaBatch(n_tokens=self._room, embd=0, n_seq_max=1, verbose=False)
        self._steps = 0
        self.warm = warm
        self.draft = draft
        self.draft_max = draft_max
        self._n_vocab = int(llm.n_vocab())
        self.costs = DecodeCosts(DECODE_TOKENS)
        #: Counters for benchmarks and tests: decodes, draft tokens tried and kept, prompt tokens
        #: evaluated, reused from a slot's cache and restored from the warm store.
        self.counters = dict.fromkeys(("decodes", "drafted", "accepted", "evaluated", "reused", "restored"), 0)

    # --- the scheduler's view --------------------------------------------------------------------------
    def free(self) -> int:
        return sum(1 for slot in self.slots if slot.run is None)

    def busy(self) -> bool:
        return any(slot.run is not None for slot in self.slots)

    @staticmethod
    def can_take(extras: StreamExtras | None) -> bool:
        """Whether a request can run in a slot: images, the prompt's logprobs (echo) and sampler views
        need the one-sequence path (``LlamaCppBackend.stream``) and run alone."""
        extras = extras or StreamExtras()
        return not extras.images and not extras.echo_logprobs and extras.sampler_views is None

    def start(
        self,
        prompt: list[int],
        params: SamplingParams,
        cancel: threading.Event,
        extras: StreamExtras | None,
        emit: Callable[[Chunk], None],
        prompt_cut: int = 0,
    ) -> Slot:
        """Place a request (its prompt already tokenized and fitted to the context) in a free slot.

        The slot whose cached tokens share the longest prefix with the prompt is chosen (then the
        least recently used); the rest of its sequence is dropped. Raises ``GrammarError`` for a bad
        grammar before anything changes.
        """
        extras = extras or StreamExtras()
        llm = self._llm
        lazy = None
        if extras.grammar_triggers and params.grammar_string.strip():
            lazy = LazyTrigger(
                extras.grammar_triggers,
                piece=lambda t: llm.detokenize([t], special=True),
                tokenize=lambda text: llm.tokenize(text, add_bos=False, special=True),
            )
        # a bad grammar raises here, before the slot is touched
        sampler = build_sampler(llm, params, self.n_ctx, self._eog_list, grammar_prefix=None if lazy else ())
        slot = self._choose(prompt)
        self._steps += 1
        slot.used = self._steps
        body = prompt[:-1]
        common = self._exact_prefix(slot, body, common_prefix(slot.cached, body))
        reused = common
        common = self._maybe_restore(slot, body, common)
        self._drop(slot, common)
        if common > reused:
            self.counters["restored"] += common
        else:
            self.counters["reused"] += common
        top_n = extras.top_logprobs
        special = not params.skip_special_tokens
        slot.run = _Run(
            prompt=prompt,
            params=params,
            cancel=cancel,
            emit=emit,
            max_tokens=min(params.max_tokens, self.n_ctx - len(prompt)),
            prompt_cut=prompt_cut,
            sampler=sampler,
            out=StopStringFilter(params.stop, logprobs=top_n is not None),
            decoder=codecs.getincrementaldecoder("utf-8")(errors="replace"),
            special=special,
            lazy=lazy,
            maker=(
                LogprobMaker(top_n or 0, lambda t: llm.detokenize([t], special=special)) if top_n is not None else None
            ),
            read=common,
        )
        if common >= len(body):
            slot.run.next_token = prompt[-1]
        return slot

    def step(self) -> None:
        """One round: a chunk of one slot's prompt (its own decode), then every generating slot's next
        token and drafts in one decode. Chunks go out through each request's ``emit``.

        The two are never mixed in one batch, and a generation batch holds at most ``DECODE_TOKENS``
        tokens: llama.cpp's CPU kernels for quantized weights compute a wide batch in another way than a
        narrow one (gemma-3's Q4_K logits moved by up to 1.1 between 16 tokens at once and one at a time),
        so a token's logits would depend on what else was in its batch. A prompt is read in chunks of the
        same size whether it is alone or not, so it leaves the same keys and values either way.
        """
        for slot in self.slots:
            run = slot.run
            if run is not None and run.cancel.is_set():
                self._finish(slot, "cancelled")
        self._read_prompt()
        self._generate()

    def _read_prompt(self) -> None:
        reading = [slot for slot in self.slots if slot.run is not None and slot.run.next_token is None]
        if not reading:
            return
        slot = min(reading, key=lambda s: s.used)  # the earliest request first, one chunk per step
        run = slot.run
        assert run is not None
        batch = self._batch.batch
        batch.n_tokens = 0
        end = min(len(run.prompt) - 1, (run.read // self._chunk + 1) * self._chunk)  # up to the next multiple
        take = run.prompt[run.read : end]
        for i, token in enumerate(take):
            self._add(slot, token, run.read + i, logits=False)
        self._decode()
        slot.cached += take
        slot.saved = False
        self.counters["evaluated"] += len(take)
        run.read = end
        if end % self._chunk == 0:
            slot.exact = end  # reading starts at slot.exact, so every chunk before this one was whole too
        if run.read >= len(run.prompt) - 1:
            run.next_token = run.prompt[-1]
            slot.body_end = run.read

    def _generate(self) -> None:
        ready = [slot for slot in self.slots if slot.run is not None and slot.run.next_token is not None]
        for i in range(0, len(ready), DECODE_TOKENS):
            self._generate_in(ready[i : i + DECODE_TOKENS])

    def _generate_in(self, ready: list[Slot]) -> None:
        """One decode: each of ``ready``'s next token, and as many drafts as fit in ``DECODE_TOKENS``."""
        batch = self._batch.batch
        batch.n_tokens = 0
        width = len(ready)  # the tokens this decode holds so far: every slot's next one, and the drafts added
        sampled: list[tuple[Slot, int]] = []  # (slot, index of its first logits row)
        for slot in ready:
            run = slot.run
            assert run is not None and run.next_token is not None
            run.drafts = self._drafts(slot, width)
            width += len(run.drafts)
            first = batch.n_tokens
            sampled.append((slot, first))
            for k, token in enumerate((run.next_token, *run.drafts)):
                self._add(slot, token, len(slot.cached) + k, logits=True)
        if not sampled:
            return
        started = time.perf_counter()
        self._decode()
        self.costs.observe(batch.n_tokens, time.perf_counter() - started)
        for slot, first in sampled:
            self._take_tokens(slot, first)

    def _decode(self) -> None:
        self.counters["decodes"] += 1
        code = self._lib.llama_decode(self._llm._ctx.ctx, self._batch.batch)
        if code != 0:
            raise GenerationError(f"llama.cpp could not decode the batch (llama_decode returned {code}).")

    def reset(self) -> None:
        """Forget every slot's request and cache (after a failed decode: trust nothing)."""
        for slot in self.slots:
            slot.run = None
            self._drop(slot, 0)

    def idle(self) -> None:
        """Nothing is running: save the long prefixes the slots hold to the warm store."""
        if self.warm is None:
            return
        for slot in self.slots:
            if slot.run is None and slot.cached and not slot.saved:
                if slot.exact >= self._chunk:
                    # Only the whole chunks: a state must continue exactly as a fresh read of its tokens would.
                    self._drop(slot, slot.exact)
                try:
                    self.warm.save(self._llm._ctx.ctx, slot.seq, slot.cached)
                except Exception:  # a full disk must not stop generation
                    log.exception("Could not save the state of sequence %d", slot.seq)
                slot.saved = True

    def close(self) -> None:
        self._batch.close()
        draft, self.draft = self.draft, None
        if draft is not None:
            draft.close()

    # --- inside ----------------------------------------------------------------------------------------
    def _choose(self, prompt: list[int]) -> Slot:
        free = [slot for slot in self.slots if slot.run is None]
        if not free:
            raise GenerationError("No free slot: the scheduler started more requests than there are slots.")
        # the longest shared prefix first, then the least recently used (its cache is the least likely wanted)
        return max(free, key=lambda slot: (common_prefix(slot.cached, prompt), -slot.used))

    def _exact_prefix(self, slot: Slot, body: list[int], common: int) -> int:
        """How much of the slot's cached prefix (``common`` tokens of ``body``) the request may keep.

        llama.cpp's CPU kernels compute a token's keys and values slightly differently in a batch of 256
        than in one of 3, so a prompt read from a cached prefix of any length would not give the text a
        fresh read gives (gemma-3: another greedy reply to the same question after another question).
        Chunks start at multiples of the chunk size, and a request keeps only the whole chunks it shares
        with the cache (at most one chunk is read again), or all of it when it is the same prompt again.
        """
        if slot.body_end == len(body) and common >= len(body):
            return len(body)
        kept = min(common, slot.exact)
        return kept - kept % self._chunk

    def _maybe_restore(self, slot: Slot, body: list[int], common: int) -> int:
        """Load a saved state when the store holds a longer prefix of the prompt than the slot does."""
        warm = self.warm
        if warm is None or len(body) <= common:
            return common
        try:
            if warm.match_length(body + [0]) <= common:  # (the store keeps one token to evaluate)
                return common
            self._drop(slot, 0)
            restored = warm.restore(self._llm._ctx.ctx, slot.seq, body + [0])
        except Exception:
            log.exception("Could not restore a saved state into sequence %d", slot.seq)
            self._drop(slot, 0)
            return 0
        slot.cached = list(body[:restored])
        slot.saved = True
        slot.exact, slot.body_end = restored, None
        whole = restored - restored % self._chunk  # states are saved at whole chunks (older ones may not be)
        self._drop(slot, whole)
        return whole

    def _drop(self, slot: Slot, keep: int) -> None:
        """Keep only the first ``keep`` positions of the slot's sequence."""
        if keep < len(slot.cached) or keep == 0:
            memory = self._lib.llama_get_memory(self._llm._ctx.ctx)
            if not self._lib.llama_memory_seq_rm(memory, slot.seq, keep, -1):
                self._lib.llama_memory_seq_rm(memory, slot.seq, 0, -1)
                keep = 0
            slot.cached = slot.cached[:keep]
            slot.saved = False  # what it holds now is not the state that was saved
            slot.exact = min(slot.exact, keep - keep % self._chunk)
            if slot.body_end is not None and slot.body_end > keep:
                slot.body_end = None

    def _add(self, slot: Slot, token: int, pos: int, logits: bool) -> None:
        batch = self._batch.batch
        i = batch.n_tokens
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = slot.seq
        batch.logits[i] = logits
        batch.n_tokens = i + 1

    def _drafts(self, slot: Slot, width: int) -> list[int]:
        """Draft tokens for this step, to go into a decode of ``width`` tokens so far: prompt lookup's when the
        request asks for it, else the draft model's (none without either, or while a lazy grammar waits for its
        trigger). How many: at most the request's window, and the number that makes the decode's width the
        cheapest per token (``DecodeCosts``)."""
        run = slot.run
        assert run is not None
        n = run.params.prompt_lookup or (self.draft_max if self.draft is not None else 0)
        if n <= 0 or run.lazy is not None:  # (most requests: no cost model on every token)
            return []
        want = self.costs.best_drafts(width, min(n, run.max_tokens - len(run.generated) - 1, run.window))
        if want <= 0:
            return []
        if run.rest > 0:
            run.rest -= 1
            return []
        history = [*run.prompt, *run.generated]
        if run.params.prompt_lookup or self.draft is None:
            drafts = lookup_drafts(history, want)
        elif not run.generated:
            return []  # the draft model reads the prompt after the first token is out, not before (TTFT)
        else:
            try:
                drafts = self.draft.propose(slot.seq, history, want)
            except Exception:  # the main model goes on without drafts
                log.exception("The draft model failed; this step goes without drafts")
                return []
        # fewer than wanted (the match is near the end of the text): again the cheapest width for what there is
        return drafts[: self.costs.best_drafts(width, len(drafts))]

    def _take_tokens(self, slot: Slot, first: int) -> None:
        """Draw the slot's tokens from its rows of logits: one, plus each draft the sampler agreed with."""
        run = slot.run
        assert run is not None and run.next_token is not None
        evaluated = [run.next_token, *run.drafts]
        for i in range(len(evaluated)):
            token = self._sample(run, first + i)  # from the row after evaluated[i], which is right
            reason = self._accept(run, token, first + i)
            wrong = i + 1 < len(evaluated) and token != evaluated[i + 1]
            if reason is not None or wrong or i + 1 == len(evaluated):
                break
        kept = i + 1
        if run.drafts:
            # Each draft token costs nearly a token's work (its row of logits: most of a small model's work with
            # gemma-3's 262,144-token vocabulary), so a free chat, whose drafts are mostly wrong, ran at 0.8 x.
            # As many drafts as were right last time (at least MIN_WINDOW), twice as many when all were; after
            # 2 steps in a row whose first draft was wrong, none for 1, 2, 4... steps (up to MAX_REST).
            right = kept - 1
            run.window = min(2 * run.window, MAX_DRAFTS) if right == len(run.drafts) else max(MIN_WINDOW, right)
            run.misses = run.misses + 1 if right == 0 else 0
            run.rest = min(2 ** (run.misses - 2), MAX_REST) if run.misses >= 2 else 0
        self.counters["drafted"] += len(run.drafts)
        self.counters["accepted"] += kept - 1
        slot.cached += evaluated[:kept]
        slot.saved = False
        if kept < len(evaluated):
            self._drop_from(slot, len(slot.cached))  # the drafts from the first wrong one on
        if reason is not None:
            self._finish(slot, reason)
            return
        run.next_token = token

    def _drop_from(self, slot: Slot, pos: int) -> None:
        memory = self._lib.llama_get_memory(self._llm._ctx.ctx)
        self._lib.llama_memory_seq_rm(memory, slot.seq, pos, -1)

    def _sample(self, run: _Run, row: int) -> int:
        return int(run.sampler.sample(self._llm._ctx, row))

    def _accept(self, run: _Run, token: int, row: int) -> FinishReason | None:
        """Hand a drawn token to the request; the reason it ends there, if it does."""
        if token in self._eog:
            return "stop"
        entries: Sequence[TokenLogprob] = ()
        if run.maker is not None:
            entries = run.maker.entries(self._row(row), [token])
        run.generated.append(token)
        if run.lazy is not None and (replay := run.lazy.feed(token)) is not None:
            # the grammar starts here: a chain with it, that knows what was generated so far
            run.sampler = build_sampler(self._llm, run.params, self.n_ctx, self._eog_list, run.generated, replay)
            run.lazy = None
            run.drafts = []
        piece = run.decoder.decode(self._llm.detokenize([token], special=run.special))
        chunk = run.out.feed(piece, 1, entries)
        if run.out.stopped:
            return "stop"
        if chunk is not None:
            run.emit(chunk)
        if len(run.generated) >= run.max_tokens:
            return "length"
        return None

    def _row(self, row: int) -> np.ndarray:
        import numpy as np

        pointer = self._lib.llama_get_logits_ith(self._llm._ctx.ctx, row)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))

    def _finish(self, slot: Slot, reason: FinishReason) -> None:
        run, slot.run = slot.run, None
        assert run is not None
        if reason == "cancelled":
            # what a cancelled request generated is of no use to the next one: keep its prompt only
            self._drop(slot, min(len(slot.cached), len(run.prompt) - 1))
        last = run.out.finish(
            reason, len(run.prompt), tail=run.decoder.decode(b"", final=True), prompt_cut=run.prompt_cut
        )
        run.emit(last)


def lookup_drafts(history: Sequence[int], n: int) -> list[int]:
    """Up to ``n`` tokens that followed the latest earlier occurrence of the last 3 (else 2) tokens of
    ``history``: prompt lookup's guess of what comes next when the text copies itself or its prompt.

    (llama-cpp-python's ``LlamaPromptLookupDecoding`` also matches single tokens and takes the first
    occurrence; a one-token match is mostly chance in free text, and each wrong draft costs a wider
    decode, so a free chat ran at half speed with it.)
    """
    import numpy as np

    ids = np.asarray(history, dtype=np.intc)
    for size in range(LOOKUP_NGRAM, LOOKUP_NGRAM_MIN - 1, -1):
        if len(ids) <= size or n <= 0:
            break
        windows = np.lib.stride_tricks.sliding_window_view(ids[:-1], size)
        hits = np.nonzero((windows == ids[-size:]).all(axis=1))[0]
        if hits.size:
            start = int(hits[-1]) + size
            return [int(t) for t in ids[start : start + n]]
    return []


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
