"""Our own llama.cpp sampler chain.

llama-cpp-python's high-level ``Llama`` builds a fixed chain (penalties over
the last 64 tokens, top-k/typical/top-p/min-p, temperature). We replace it to
offer what llama.cpp itself has: DRY, XTC, the penalty range, banning the
end-of-sequence token and grammars, in llama.cpp's own default order:
penalties -> DRY -> top-k -> typical -> top-p -> min-p -> XTC -> temperature -> draw.

The chain is llama.cpp's; what it is handed is ours. ``llama_sampler_sample`` copies the whole row of
logits into a candidate array (262,144 entries for gemma-3) and the penalties look each one up, which
took 1.6 ms of a 14 ms gemma-3 token right after a decode (docs/performance.md, "Parallel decoding").
Greedy decoding and top-k sampling only ever draw from a few candidates, known before the chain
runs: the chain is then applied to that short list (``ShortlistChain``), with the same result.
"""

from __future__ import annotations

import ctypes
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

from webui.errors import GrammarError
from webui.params import SamplingParams

#: Vocabularies from this size on are sampled from a short list (``ShortlistChain``). On gemma-3's 262,144
#: tokens the whole row took 1.6-1.8 ms a token against 0.2-0.5 ms. On SmolLM2's 49,152 the whole row looked as
#: fast in a single stream (0.08-0.39 ms against 0.16-0.48), but timed in the slot engine (bench/sampling.py) it
#: took 0.39-0.43 ms a token against 0.10-0.14 (greedy) and 0.20-0.31 (the default chain): 0-4 % more tokens/s
#: with the short list, never less. The whole row costs about 9 ns a token of vocabulary, the list about 0.1 ms:
#: 32,000 takes in Llama-2's and Mistral's vocabularies, where the two should be about even or the list ahead.
SHORTLIST_MIN_VOCAB = 32_000
#: llama.cpp's ``llama_token_data`` as a numpy record (id, logit, p).
_TOKEN_DATA = [("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]


def eog_tokens(llm: Any) -> list[int]:
    """All end-of-generation token ids of the model (EOS, end-of-turn...)."""
    import llama_cpp

    vocab = llm._model.vocab
    return [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]


def _grammar_allows(sampler: Any, token: int) -> bool:
    """Whether the grammar sampler accepts ``token`` next (asked without changing its state)."""
    import llama_cpp

    data = llama_cpp.llama_token_data(token, 0.0, 0.0)
    array = llama_cpp.llama_token_data_array(data=ctypes.pointer(data), size=1, selected=-1, sorted=False)
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
    return math.isfinite(data.logit)


def new_grammar(llm: Any, grammar: str, prefix: Sequence[int] = ()) -> Any:
    """A llama.cpp grammar sampler that has accepted ``prefix`` (a raw pointer; the caller owns it)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        raise GrammarError(
            "The grammar is not valid GBNF (llama.cpp could not parse it). It needs a 'root' rule, "
            'e.g.  root ::= "yes" | "no"'
        )
    for token in prefix:
        # Accepting a token the grammar rejects throws inside llama.cpp (and aborts): ask first.
        if not _grammar_allows(sampler, token):
            llama_cpp.llama_sampler_free(sampler)
            text = llm.detokenize(list(prefix), special=True).decode("utf-8", errors="replace")
            raise GrammarError(f"The text from the grammar trigger on ({text!r}) does not fit the grammar.")
        llama_cpp.llama_sampler_accept(sampler, token)
    return sampler


def build_sampler(
    llm: Any,
    params: SamplingParams,
    n_ctx: int,
    eog: list[int],
    history: Sequence[int] = (),
    grammar_prefix: Sequence[int] | None = (),
) -> Any:
    """A fresh ``LlamaSampler`` chain for one generation with ``params``.

    ``history``: tokens generated so far, for the penalties to remember (a chain made in the
    middle of a generation, when a lazy grammar starts). ``grammar_prefix``: tokens the grammar
    must accept before it constrains anything; None leaves the grammar out (until a trigger).
    """
    import llama_cpp

    chain = ShortlistChain()
    n_vocab = llm.n_vocab()
    if params.ban_eos_token and eog:
        chain.add_logit_bias(n_vocab, {t: float("-inf") for t in eog})
    last_n = n_ctx if params.repeat_last_n == -1 else params.repeat_last_n
    chain.add_penalties(n_vocab, last_n, params.repeat_penalty, params.frequency_penalty, params.presence_penalty)
    if params.dry_multiplier > 0:
        llama_cpp.llama_sampler_chain_add(chain.sampler, _dry_sampler(llm, params, n_ctx))
    for token in history:
        llama_cpp.llama_sampler_accept(chain.sampler, token)
    if grammar_prefix is not None and params.grammar_string.strip():
        llama_cpp.llama_sampler_chain_add(chain.sampler, new_grammar(llm, params.grammar_string, grammar_prefix))
    seed = params.seed & 0xFFFFFFFF
    if params.greedy:
        chain.add_greedy()
    elif params.mirostat_mode == 1:
        chain.add_temp(params.temperature)
        chain.add_mirostat(n_vocab, seed, params.mirostat_tau, params.mirostat_eta, 100)
    elif params.mirostat_mode == 2:
        chain.add_temp(params.temperature)
        chain.add_mirostat_v2(seed, params.mirostat_tau, params.mirostat_eta)
    else:
        chain.add_top_k(params.top_k)
        chain.add_typical(params.typical_p, 1)
        chain.add_top_p(params.top_p, 1)
        chain.add_min_p(params.min_p, 1)
        if params.xtc_probability > 0:
            chain.add_xtc(params.xtc_probability, params.xtc_threshold, 1, seed)
        chain.add_temp(params.temperature)
        chain.add_dist(seed)
    chain.shortlist = shortlist_size(params, n_vocab, has_grammar=grammar_prefix is not None)
    if chain.shortlist:
        chain.prepare(n_vocab, eog if params.ban_eos_token else (), params, n_ctx, history)
    return chain


_DRY_LOCK = threading.Lock()


def _dry_sampler(llm: Any, params: SamplingParams, n_ctx: int) -> Any:
    """A new DRY sampler (a raw pointer the chain takes over), cloned from one kept per model and settings.

    Making one reads every token's text to find the sequence breakers in the vocabulary: 45-55 ms on
    gemma-3's 262,144 tokens (9 ms on SmolLM2), before every request's first token. A clone copies the
    breakers already found (llama.cpp's ``llama_sampler_clone``), and the kept one never sees a token.
    """
    import llama_cpp

    last_n = n_ctx if params.dry_penalty_last_n == -1 else params.dry_penalty_last_n
    key = (
        params.dry_multiplier,
        params.dry_base,
        params.dry_allowed_length,
        last_n,
        tuple(params.dry_sequence_breakers),
    )
    with _DRY_LOCK:
        kept: dict[tuple, Any] | None = getattr(llm, "_webui_dry_samplers", None)
        if kept is None:
            kept = llm._webui_dry_samplers = {}
            # freed with the model (Llama.close; the function is bound now: at exit imports fail)
            llm._stack.callback(_free_samplers, kept, llama_cpp.llama_sampler_free)
        original = kept.get(key)
        if original is None:
            breakers = (ctypes.c_char_p * len(key[4]))(*(b.encode("utf-8") for b in key[4]))
            original = llama_cpp.llama_sampler_init_dry(
                llm._model.vocab, key[0], key[1], key[2], last_n, breakers, len(key[4])
            )
            if len(kept) >= 16:  # a client sending new settings each time does not grow this without end
                _free_samplers(kept, llama_cpp.llama_sampler_free)
            kept[key] = original
        return llama_cpp.llama_sampler_clone(original)


def _free_samplers(kept: dict[tuple, Any], free: Callable[[Any], None]) -> None:
    for sampler in kept.values():
        free(sampler)
    kept.clear()


def shortlist_size(params: SamplingParams, n_vocab: int, *, has_grammar: bool) -> int:
    """How many of the best raw candidates (besides the tokens the penalties touch) hold every token
    the chain could draw with ``params``: 1 for greedy, ``top_k`` for top-k sampling; 0 when it needs
    the whole row (a grammar, mirostat, no top_k, or a penalty that can raise a logit) or when the
    vocabulary is small enough for the whole row to be as fast."""
    if n_vocab < SHORTLIST_MIN_VOCAB or (has_grammar and params.grammar_string.strip()):
        return 0
    if params.repeat_penalty < 1.0 or params.frequency_penalty < 0.0 or params.presence_penalty < 0.0:
        return 0  # a token outside the best few could climb into them
    if params.greedy:
        return 1
    if params.mirostat_mode or not 0 < params.top_k < n_vocab:
        return 0
    return params.top_k


def _make_chain_class() -> type:
    import llama_cpp
    import numpy as np
    from llama_cpp import _internals

    from webui.sampling.chain import top_indices

    record = np.dtype(_TOKEN_DATA)

    class _ShortlistChain(_internals.LlamaSampler):
        """Our chain, applied to a short list of candidates when ``shortlist`` says it may be.

        With ``shortlist = m``, a token is drawn from the ``h`` tokens the penalties, DRY and the
        end-of-text ban may lower (those in the penalties' window, the banned ones) and the ``m`` best
        of the others. Those samplers only lower logits, so the best ``m`` after them - the greedy token
        (ties: the lowest id, as llama.cpp's greedy picks), or top-k's ``k`` - are all in the list; the
        samplers after top-k only see those ``k``. The list is in token-id order, as the
        whole row is. Otherwise (``shortlist = 0``) the whole row goes to the chain, as
        ``llama_sampler_sample`` does.
        """

        shortlist = 0

        def prepare(
            self, n_vocab: int, banned: Sequence[int], params: SamplingParams, n_ctx: int, history: Sequence[int]
        ) -> None:
            self._n_vocab = n_vocab
            self._banned = sorted(set(banned))
            windows = [params.repeat_last_n, params.dry_penalty_last_n if params.dry_multiplier > 0 else 0]
            self._window = n_ctx if -1 in windows else max(windows)
            self._history = list(history)
            self._room = 0
            self._grow(self.shortlist + len(self._banned) + 64)

        def _grow(self, size: int) -> None:
            self._room = max(size, 2 * self._room)
            self._data = (llama_cpp.llama_token_data * self._room)()
            self._view = np.frombuffer(self._data, dtype=record)
            self._array = llama_cpp.llama_token_data_array(data=self._data, size=0, selected=-1, sorted=False)

        def sample(self, ctx: Any, idx: int = -1) -> int:
            if not self.shortlist:
                return int(llama_cpp.llama_sampler_sample(self.sampler, ctx.ctx, idx))
            pointer = llama_cpp.llama_get_logits_ith(ctx.ctx, idx)
            row = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
            touched = set(self._history[-self._window :]) if self._window else set()
            touched.update(self._banned)
            lowered = np.fromiter(touched, dtype=np.int64, count=len(touched))
            # The best untouched tokens: the touched ones are set aside for a moment (one pass over the row).
            kept = row[lowered]
            row[lowered] = -np.inf
            try:
                best = [int(row.argmax())] if self.shortlist == 1 else top_indices(row, self.shortlist)
            finally:
                row[lowered] = kept
            ids = np.sort(np.concatenate((np.asarray(best, dtype=np.int64), lowered)))
            if ids.size > self._room:
                self._grow(ids.size)
            view = self._view[: ids.size]
            view["id"], view["logit"], view["p"] = ids, row[ids], 0.0
            array = self._array
            array.size, array.selected, array.sorted = ids.size, -1, False
            llama_cpp.llama_sampler_apply(self.sampler, ctypes.byref(array))
            token = int(self._view["id"][array.selected])
            llama_cpp.llama_sampler_accept(self.sampler, token)
            self._history.append(token)
            return token

    return _ShortlistChain


_CHAIN_CLASS: type | None = None


def ShortlistChain() -> Any:  # noqa: N802 - a class made on first use (llama_cpp is imported lazily)
    """A new, empty ``_ShortlistChain`` (an ``llama_cpp._internals.LlamaSampler``)."""
    global _CHAIN_CLASS
    if _CHAIN_CLASS is None:
        _CHAIN_CLASS = _make_chain_class()
    return _CHAIN_CLASS()
