"""Log-probabilities (``top_logprobs``, ``echo``) from both local loaders, on the real SmolLM2 weights.

The llama.cpp loader runs the GGUF, the transformers loader the checkpoint made from it, so
the same greedy token should come out of both with about the same logprob.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from testdata import PARIS_PROMPT
from webui.loaders.base import Chunk, StopStringFilter, StreamExtras, TokenLogprob, TopLogprob
from webui.params import SamplingParams

pytestmark = pytest.mark.integration

GREEDY = SamplingParams(do_sample=False, max_tokens=10)


def run(backend, prompt: str, params: SamplingParams, extras: StreamExtras) -> list[Chunk]:
    return list(backend.stream(prompt, params, threading.Event(), extras))


@pytest.fixture(scope="module")
def llama_greedy(llama) -> list[Chunk]:
    return run(llama, PARIS_PROMPT, GREEDY, StreamExtras(top_logprobs=5, echo_logprobs=True))


@pytest.fixture(scope="module")
def hf_greedy(hf) -> list[Chunk]:
    return run(hf, PARIS_PROMPT, GREEDY, StreamExtras(top_logprobs=5, echo_logprobs=True))


def check_greedy(chunks: list[Chunk], n_top: int) -> list[TokenLogprob]:
    text = "".join(c.text for c in chunks)
    assert "Paris" in text
    entries = []
    for chunk in chunks:
        assert chunk.logprobs is not None
        entries += chunk.logprobs
    assert len(entries) == sum(c.n_tokens for c in chunks)
    assert "".join(e.token for e in entries) == text
    for e in entries:
        assert e.logprob is not None and e.logprob <= 0
        assert len(e.top) == n_top
        logprobs = [t.logprob for t in e.top]
        assert logprobs == sorted(logprobs, reverse=True)
        # greedy: the drawn token is the most likely one, and its logprob is the top entry's
        assert e.top[0].token == e.token and e.top[0].bytes == e.bytes
        assert e.logprob == pytest.approx(e.top[0].logprob, abs=1e-6)
        assert sum(math.exp(x) for x in logprobs) <= 1 + 1e-4
        assert bytes(e.bytes).decode("utf-8", errors="replace") == e.token
    return entries


def check_echo(chunks: list[Chunk], n_prompt: int) -> None:
    echo = chunks[0].prompt_logprobs
    assert echo is not None and len(echo) == n_prompt
    assert echo[0].logprob is None and echo[0].token == "<|im_start|>"
    assert all(e.logprob is not None and e.logprob <= 0 for e in echo[1:])
    assert "".join(e.token for e in echo) == PARIS_PROMPT
    assert all(c.prompt_logprobs is None for c in chunks[1:])


def test_llama_greedy_top_logprobs(llama_greedy):
    check_greedy(llama_greedy, 5)


def test_llama_echo(llama, llama_greedy):
    check_echo(llama_greedy, len(llama.tokenize(PARIS_PROMPT)))


def test_llama_first_token_matches_a_direct_softmax(llama, llama_greedy):
    first = llama_greedy[0].logprobs[0]
    llm = llama._llm
    tokens = llama.tokenize(PARIS_PROMPT)
    llm.reset()
    # as the loader does: the prompt but its last token in one batch, then the last alone
    # (a one-token batch gives logits a few hundredths apart from a many-token batch's)
    llm.eval(tokens[:-1])
    llm.eval(tokens[-1:])
    logits = np.array(llama._last_logits(), dtype=np.float64)
    logp = logits - logits.max()
    logp -= np.log(np.exp(logp).sum())
    assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-6)
    best = np.argsort(-logp)[:5]
    assert [t.logprob for t in first.top] == pytest.approx(logp[best].tolist(), abs=1e-3)
    assert first.logprob == pytest.approx(logp[best[0]], abs=1e-3)


def test_llama_without_logprobs_has_none(llama):
    chunks = run(llama, PARIS_PROMPT, GREEDY, StreamExtras())
    assert all(c.logprobs is None and c.prompt_logprobs is None for c in chunks)


def test_llama_top_zero_and_sampling(llama):
    params = SamplingParams(temperature=0.8, max_tokens=8, seed=7)
    chunks = run(llama, PARIS_PROMPT, params, StreamExtras(top_logprobs=0))
    entries = [e for c in chunks for e in c.logprobs]
    assert entries and all(e.top == () and e.logprob <= 0 for e in entries)
    assert "".join(e.token for e in entries) == "".join(c.text for c in chunks)


def test_transformers_greedy_top_logprobs(hf_greedy):
    check_greedy(hf_greedy, 5)


def test_transformers_echo(hf, hf_greedy):
    check_echo(hf_greedy, len(hf.tokenize(PARIS_PROMPT)))


def test_transformers_first_token_matches_a_direct_softmax(hf, hf_greedy):
    import torch

    first = hf_greedy[0].logprobs[0]
    with torch.inference_mode():
        ids = torch.tensor([hf.tokenize(PARIS_PROMPT)])
        logp = torch.log_softmax(hf._model(input_ids=ids).logits[0, -1].double(), dim=-1)
    assert float(logp.exp().sum()) == pytest.approx(1.0, abs=1e-6)
    top = torch.topk(logp, 5)
    assert [t.logprob for t in first.top] == pytest.approx(top.values.tolist(), abs=1e-3)


def test_both_loaders_agree_on_the_first_token(llama_greedy, hf_greedy):
    a, b = llama_greedy[0].logprobs[0], hf_greedy[0].logprobs[0]
    assert a.token == b.token
    assert a.logprob == pytest.approx(b.logprob, abs=0.25)
    assert [t.token for t in a.top[:2]] == [t.token for t in b.top[:2]]


def entry(text: str) -> TokenLogprob:
    return TokenLogprob(text, -0.5, tuple(text.encode()), (TopLogprob(text, -0.5),))


def test_stop_filter_carries_logprobs_and_drops_the_stopped_tokens():
    out = StopStringFilter(["\n\n"], logprobs=True)
    chunks = [out.feed(p, 1, [entry(p)]) for p in ("Hello", " world", ".\n", "\nmore")]
    assert out.stopped
    last = out.finish("stop", 3)
    sent = [c for c in (*chunks, last) if c is not None]
    assert "".join(c.text for c in sent) == "Hello world."
    # ".\n" starts before the stop string and stays; "\nmore" lies inside it and is dropped
    assert [e.token for c in sent for e in c.logprobs] == ["Hello", " world", ".\n"]


def test_stop_filter_holds_entries_back_with_their_text():
    out = StopStringFilter(["</s>"], logprobs=True)
    first = out.feed("ok <", 1, [entry("ok <")])
    # "<" is held back (it may start "</s>"); the token goes with the chunk its text starts in
    assert first is not None and first.text == "ok " and [e.token for e in first.logprobs] == ["ok <"]
    assert out.feed("", 1, [entry("")]) is None  # a token with no text yet (half a character)
    second = out.feed("b", 1, [entry("b")])
    assert second.text == "<b" and [e.token for e in second.logprobs] == ["", "b"]
    assert out.finish("length", 1).logprobs == []
    plain = StopStringFilter([])
    assert plain.feed("x").logprobs is None
