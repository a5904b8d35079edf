"""Perplexity and surprise (webui/sampling/perplexity.py): the formulas, and on SmolLM2 the
perplexity from the API's logprobs equals exp(mean NLL) computed here from the raw logits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from webui.errors import WebUIError
from webui.loaders.logprobs import LogprobMaker
from webui.sampling import perplexity, surprise_bits


def test_perplexity_is_exp_of_the_mean_negative_logprob() -> None:
    # a model choosing among 4 equally likely tokens at every step
    assert perplexity([math.log(0.25)] * 5) == pytest.approx(4.0)
    assert perplexity([math.log(0.5), math.log(0.125)]) == pytest.approx(math.exp((math.log(2) + math.log(8)) / 2))
    assert perplexity([0.0, 0.0]) == 1.0


def test_the_first_token_without_a_logprob_is_left_out() -> None:
    assert perplexity([None, math.log(0.5), math.log(0.5)]) == pytest.approx(2.0)


def test_too_short_a_text_is_an_error_for_the_user() -> None:
    for nothing in ([], [None]):
        with pytest.raises(WebUIError, match="too short"):
            perplexity(nothing)


def test_impossible_tokens_make_it_infinite() -> None:
    assert perplexity([math.log(0.5), -math.inf]) == math.inf
    assert perplexity([-800.0, -800.0]) == math.inf  # beyond a float, not an OverflowError


def test_surprise_in_bits() -> None:
    assert surprise_bits(math.log(0.5)) == pytest.approx(1.0)
    assert surprise_bits(math.log(1 / 8)) == pytest.approx(3.0)
    assert surprise_bits(0.0) == 0.0
    assert surprise_bits(-math.inf) == math.inf


def test_perplexity_on_smollm2_equals_exp_mean_nll_from_its_logits(smollm_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(smollm_path), n_ctx=256, logits_all=True, verbose=False)
    try:
        text = b"The capital of France is Paris. It is known for the Eiffel Tower and its museums."
        tokens = llm.tokenize(text, add_bos=False)
        llm.eval(tokens)
        rows = np.array(llm.scores[: len(tokens)], dtype=np.float32)
        # row i predicts token i + 1; the first token has nothing before it
        logits = rows[:-1].astype(np.float64)
        targets = np.array(tokens[1:])
        peak = logits.max(axis=1, keepdims=True)
        log_norm = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
        nll = log_norm - logits[np.arange(len(targets)), targets]
        expected = math.exp(nll.mean())

        maker = LogprobMaker(0, lambda t: llm.detokenize([t]))
        entries = [maker.first_prompt_entry(tokens[0]), *maker.entries(rows[:-1], tokens[1:])]
        got = perplexity(e.logprob for e in entries)
        assert got == pytest.approx(expected, rel=1e-6)
        assert 1.0 < got < 1000.0
        bits = [surprise_bits(e.logprob) for e in entries[1:] if e.logprob is not None]
        np.testing.assert_allclose(bits, nll / math.log(2), rtol=1e-6)
    finally:
        llm.close()
