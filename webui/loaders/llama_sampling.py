"""Our own llama.cpp sampler chain.

llama-cpp-python's high-level ``Llama`` builds a fixed chain (penalties over
the last 64 tokens, top-k/typical/top-p/min-p, temperature). We replace it to
offer what llama.cpp itself has: DRY, XTC, the penalty range, banning the
end-of-sequence token and grammars, in llama.cpp's own default order:
penalties -> DRY -> top-k -> typical -> top-p -> min-p -> XTC -> temperature -> draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from webui.errors import GrammarError
from webui.params import SamplingParams


def eog_tokens(llm: Any) -> list[int]:
    """All end-of-generation token ids of the model (EOS, end-of-turn...)."""
    import llama_cpp

    vocab = llm._model.vocab
    return [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]


def _grammar_allows(sampler: Any, token: int) -> bool:
    """Whether the grammar sampler accepts ``token`` next (asked without changing its state)."""
    import ctypes

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
    from llama_cpp import _internals

    chain = _internals.LlamaSampler()
    n_vocab = llm.n_vocab()
    if params.ban_eos_token and eog:
        chain.add_logit_bias(n_vocab, {t: float("-inf") for t in eog})
    last_n = n_ctx if params.repeat_last_n == -1 else params.repeat_last_n
    chain.add_penalties(n_vocab, last_n, params.repeat_penalty, params.frequency_penalty, params.presence_penalty)
    if params.dry_multiplier > 0:
        dry_last_n = n_ctx if params.dry_penalty_last_n == -1 else params.dry_penalty_last_n
        chain.add_dry(
            llm._model,
            params.dry_multiplier,
            params.dry_base,
            params.dry_allowed_length,
            dry_last_n,
            list(params.dry_sequence_breakers),
        )
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
    return chain
