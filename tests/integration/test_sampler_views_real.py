"""Sampler views (``StreamExtras.sampler_views``) from both local loaders, on the real SmolLM2 weights.

Each generated token comes with what the sampler chain did to the logits it was drawn from
(``webui.sampling.chain``). The tests hold the views to what the loaders actually did: the
token a greedy run draws is the view's best candidate, a sampled token is never one the view
says a sampler removed, the "before" probability of a drawn token is exactly ``exp`` of the
API's logprob from the same run, and ``next_token_logits`` (the playground's one forward pass)
is the row the first token was drawn from.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import httpx
import numpy as np
import pytest

from testdata import PARIS_PROMPT
from webui.errors import UnsupportedFeatureError
from webui.loaders.base import Backend, Chunk, StopStringFilter, StreamExtras, TokenLogprob, TokenView
from webui.loaders.remote import RemoteBackend
from webui.params import SamplingParams

pytestmark = pytest.mark.integration

#: No penalties: the greedy token is then the raw distribution's best one.
PLAIN = {"repeat_penalty": 1.0, "dry_multiplier": 0.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
GREEDY = SamplingParams(do_sample=False, max_tokens=12, **PLAIN)
#: A raw text whose continuation repeats itself, so that penalties and DRY change logits (and choices).
LIST_PROMPT = "apple, banana, cherry, apple, banana, cherry, apple, banana, cherry, apple,"


@pytest.fixture(params=["llama.cpp", "transformers"])
def backend(request) -> Backend:
    return request.getfixturevalue("llama" if request.param == "llama.cpp" else "hf")


def run(backend: Backend, prompt: str, params: SamplingParams, extras: StreamExtras) -> list[Chunk]:
    return list(backend.stream(prompt, params, threading.Event(), extras))


def views_of(chunks: list[Chunk]) -> list[TokenView]:
    views: list[TokenView] = []
    for chunk in chunks:
        assert chunk.views is not None
        views += chunk.views
    assert len(views) == sum(c.n_tokens for c in chunks)
    assert all(v.view is not None for v in views)
    return views


def logprobs_of(chunks: list[Chunk]) -> list[TokenLogprob]:
    return [e for c in chunks for e in c.logprobs or ()]


def softmax(row: np.ndarray) -> np.ndarray:
    z = row.astype(np.float64)
    z -= z.max()
    p = np.exp(z)
    return p / p.sum()


@pytest.fixture(scope="module")
def greedy_runs(llama, hf) -> dict[str, list[Chunk]]:
    """One greedy run per loader with both views and the API's logprobs."""
    extras = StreamExtras(top_logprobs=10, sampler_views=10)
    return {name: run(b, PARIS_PROMPT, GREEDY, extras) for name, b in (("llama.cpp", llama), ("transformers", hf))}


@pytest.mark.parametrize("name", ["llama.cpp", "transformers"])
def test_greedy_draws_the_top_candidate_before_and_after(greedy_runs, name):
    chunks = greedy_runs[name]
    text = "".join(c.text for c in chunks)
    assert "Paris" in text
    views = views_of(chunks)
    assert "".join(v.token for v in views) == text
    for v in views:
        view = v.view
        assert view is not None and len(view.before) == 10
        assert view.before[0].id == v.id and view.before[0].removed_by is None
        assert view.after[0].id == v.id and view.after[0].prob == pytest.approx(1.0)
        assert all(c.prob == 0 for c in view.after[1:])
        assert view.entropy_after == pytest.approx(0.0, abs=1e-9)
        probs = [c.prob for c in view.before]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        # greedy keeps one token: everything else "before" says greedy (or nothing) removed it
        assert all(c.removed_by is not None for c in view.before[1:])


@pytest.mark.parametrize("name", ["llama.cpp", "transformers"])
def test_before_probability_is_exp_of_the_api_logprob(greedy_runs, name):
    chunks = greedy_runs[name]
    views, entries = views_of(chunks), logprobs_of(chunks)
    assert len(views) == len(entries) > 0
    for v, e in zip(views, entries, strict=True):
        assert e.token == v.token
        assert math.exp(e.logprob) == pytest.approx(v.view.before[0].prob, abs=1e-5)
        # the API's alternatives are the view's "before" candidates, in the same order
        assert [math.exp(t.logprob) for t in e.top] == pytest.approx([c.prob for c in v.view.before], abs=1e-5)


@pytest.mark.parametrize("name", ["llama.cpp", "transformers"])
def test_token_text_names_the_candidates(greedy_runs, name, request):
    backend = request.getfixturevalue("llama" if name == "llama.cpp" else "hf")
    views = views_of(greedy_runs[name])
    assert [backend.token_text(v.id) for v in views] == [v.token for v in views]
    assert backend.token_text(views[0].view.before[1].id)  # a candidate not drawn has a text too


def test_views_are_off_unless_asked(backend):
    chunks = run(backend, PARIS_PROMPT, GREEDY, StreamExtras(top_logprobs=2))
    assert all(c.views is None for c in chunks)
    assert backend.capabilities.sampler_views


def test_top_k_3_keeps_at_most_3_and_draws_from_them(backend):
    params = SamplingParams(temperature=0.9, top_k=3, top_p=1.0, min_p=0.0, seed=5, max_tokens=16, **PLAIN)
    views = views_of(run(backend, PARIS_PROMPT, params, StreamExtras(sampler_views=10)))
    for v in views:
        kept = [c for c in v.view.after if c.prob > 0]
        assert 1 <= len(kept) <= 3 and v.view.pool <= 3
        assert v.id in {c.id for c in kept}
        assert sum(c.prob for c in kept) == pytest.approx(1.0, abs=1e-5)
        assert all(c.removed_by == "top_k" for c in v.view.before[3:])


def test_a_sampled_token_is_never_one_the_view_says_was_removed(llama):
    """The default chain (top_k, top_p, min_p, repetition penalty, DRY) on llama.cpp, seeded."""
    params = SamplingParams(seed=11, max_tokens=40)
    views = views_of(run(llama, LIST_PROMPT, params, StreamExtras(sampler_views=20)))
    assert len(views) >= 20
    for v in views:
        drawn = [c for c in v.view.before if c.id == v.id]
        assert all(c.removed_by is None for c in drawn), (v.token, drawn)
        assert v.view.pool >= 1
    removed = {c.removed_by for v in views for c in v.view.before}
    assert {"top_p", "min_p"} <= removed  # the check had candidates to get wrong
    assert any(v.view.penalised for v in views)


@pytest.mark.parametrize("penalties", [{"repeat_penalty": 1.5}, {"repeat_penalty": 1.3, "presence_penalty": 0.5}])
def test_greedy_with_penalties_draws_the_view_s_after_top(llama, penalties):
    """The views' penalties are llama.cpp's: a greedy run draws the view's best candidate after them."""
    params = SamplingParams(do_sample=False, max_tokens=40, dry_multiplier=0.0, **penalties)
    views = views_of(run(llama, LIST_PROMPT, params, StreamExtras(sampler_views=5)))
    assert [v.view.after[0].id for v in views] == [v.id for v in views]
    # the penalties changed the choice somewhere: the drawn token was not the raw model's best
    assert any(v.view.before[0].id != v.id for v in views)


def test_greedy_with_dry_draws_the_view_s_after_top(llama):
    params = SamplingParams(do_sample=False, max_tokens=40, repeat_penalty=1.0, dry_multiplier=0.8)
    views = views_of(run(llama, LIST_PROMPT, params, StreamExtras(sampler_views=5)))
    assert [v.view.after[0].id for v in views] == [v.id for v in views]
    assert any(v.view.before[0].id != v.id for v in views)  # DRY changed a choice
    assert not any("breakers" in note for v in views for note in v.view.notes)  # with llama.cpp's breakers


def test_views_made_in_batches_leave_the_text_and_its_end_as_without_them(llama):
    """llama.cpp makes views several tokens at a time (``VIEW_BATCH``): the text, where a stop string ends it,
    and the token count are those of the same run without views, one view per token, each made with the
    penalties of the tokens before its own (a greedy run with penalties draws every view's top)."""
    from webui.loaders.llamacpp import VIEW_BATCH

    params = SamplingParams(
        do_sample=False, max_tokens=2 * VIEW_BATCH + 5, repeat_penalty=1.5, dry_multiplier=0.0, ban_eos_token=True
    )
    plain = run(llama, LIST_PROMPT, params, StreamExtras())
    text = "".join(c.text for c in plain)
    viewed = run(llama, LIST_PROMPT, params, StreamExtras(sampler_views=3))
    views = views_of(viewed)
    assert "".join(c.text for c in viewed) == text and len(views) == params.max_tokens
    assert viewed[-1].finish_reason == plain[-1].finish_reason == "length"
    assert [v.view.after[0].id for v in views] == [v.id for v in views]
    assert any(v.view.before[0].id != v.id for v in views)  # the penalties (of the right tokens) mattered

    # A stop string met inside a batch (after the first token, before the batch is full): the text ends before
    # it, as without views, and the tokens drawn after it in that batch are not sent.
    middle = "".join(v.token for v in views[: VIEW_BATCH // 2 + 2])
    stop = middle[-4:]
    assert stop.strip() and text.index(stop) == len(middle) - 4  # (its first occurrence)
    stopped = params.model_copy(update={"stop": [stop]})
    plain = run(llama, LIST_PROMPT, stopped, StreamExtras())
    viewed = run(llama, LIST_PROMPT, stopped, StreamExtras(sampler_views=3))
    assert "".join(c.text for c in viewed) == text[: text.index(stop)]
    # the same chunks, to the token counts (the stop string's tokens count, as without views, with no view)
    shape = [(c.text, c.n_tokens, c.finish_reason) for c in plain]
    assert [(c.text, c.n_tokens, c.finish_reason) for c in viewed] == shape and shape[-1][2] == "stop"
    assert [len(c.views or ()) for c in viewed] == [n if reason is None else 0 for _, n, reason in shape]


def test_a_cancel_in_the_middle_of_a_batch_sends_what_was_drawn_with_views(llama):
    cancel = threading.Event()
    params = SamplingParams(do_sample=False, max_tokens=200, ban_eos_token=True, **PLAIN)
    chunks: list[Chunk] = []
    for chunk in llama.stream(LIST_PROMPT, params, cancel, StreamExtras(sampler_views=2)):
        chunks.append(chunk)
        if sum(c.n_tokens for c in chunks) >= 3:
            cancel.set()
    assert chunks[-1].finish_reason == "cancelled"
    views = views_of(chunks)
    assert 3 <= len(views) < 200 and "".join(v.token for v in views) == "".join(c.text for c in chunks)


def test_transformers_penalty_sees_the_prompt_too(hf):
    """transformers' repetition penalty covers the prompt: the view's does too, so greedy draws its top."""
    params = SamplingParams(do_sample=False, max_tokens=30, repeat_penalty=1.5)
    views = views_of(run(hf, LIST_PROMPT, params, StreamExtras(sampler_views=5)))
    assert [v.view.after[0].id for v in views] == [v.id for v in views]
    assert views[0].view.penalised  # the prompt's words are penalised from the first token on
    assert any(v.view.before[0].id != v.id for v in views)


def test_temperature_sharpens_and_flattens_the_after_distribution(llama):
    entropy = {}
    for t in (0.5, 1.0, 1.5):
        params = SamplingParams(temperature=t, top_k=0, top_p=1.0, min_p=0.0, seed=1, max_tokens=1, **PLAIN)
        (v,) = views_of(run(llama, PARIS_PROMPT, params, StreamExtras(sampler_views=10)))
        entropy[t] = v.view.entropy_after
        if t == 1.0:  # no sampler at all: "after" is "before"
            assert v.view.entropy_after == pytest.approx(v.view.entropy_before, rel=1e-4)
    assert entropy[0.5] < entropy[1.0] < entropy[1.5]


def test_llama_next_token_logits_is_the_first_token_s_row(llama, greedy_runs):
    first = views_of(greedy_runs["llama.cpp"])[0]
    logits = llama.next_token_logits(PARIS_PROMPT)
    assert logits.dtype == np.float32 and logits.shape == (llama._llm.n_vocab(),)
    assert int(np.argmax(logits)) == first.id
    p = softmax(logits)
    assert [p[c.id] for c in first.view.before] == pytest.approx([c.prob for c in first.view.before], abs=1e-6)
    # evaluated from scratch the way a generation does: the prompt but its last token, then that one
    llm, tokens = llama._llm, llama.tokenize(PARIS_PROMPT)
    llm.reset()
    llm.eval(tokens[:-1])
    llm.eval(tokens[-1:])
    np.testing.assert_allclose(logits, np.array(llama._last_logits()), atol=1e-4)
    # asked again with the prompt cached: the same row
    np.testing.assert_allclose(llama.next_token_logits(PARIS_PROMPT), logits, atol=1e-4)


def test_transformers_next_token_logits_is_the_first_token_s_row(hf, greedy_runs):
    import torch

    first = views_of(greedy_runs["transformers"])[0]
    logits = hf.next_token_logits(PARIS_PROMPT)
    assert logits.dtype == np.float32 and logits.ndim == 1
    assert int(np.argmax(logits)) == first.id
    p = softmax(logits)
    assert [p[c.id] for c in first.view.before] == pytest.approx([c.prob for c in first.view.before], abs=1e-5)
    with torch.inference_mode():
        direct = hf._model(input_ids=torch.tensor([hf.tokenize(PARIS_PROMPT)])).logits[0, -1].float().numpy()
    np.testing.assert_allclose(logits, direct, atol=1e-3)
    # the pass leaves its KV cache for the next generation, which still gives the same text
    again = run(hf, PARIS_PROMPT, GREEDY, StreamExtras())
    assert "".join(c.text for c in again) == "".join(v.token for v in views_of(greedy_runs["transformers"]))
    assert hf.reused_tokens == len(hf.tokenize(PARIS_PROMPT)) - 1


def test_remote_says_it_has_no_views_or_logits():
    backend = RemoteBackend(httpx.Client(base_url="http://127.0.0.1:9"), "http://127.0.0.1:9", "m", 2048, None)
    try:
        assert not backend.capabilities.sampler_views
        with pytest.raises(UnsupportedFeatureError, match="top_logprobs"):
            next(iter(backend.stream("Hi", GREEDY, threading.Event(), StreamExtras(sampler_views=10))))
        with pytest.raises(UnsupportedFeatureError, match="does not send its logits"):
            backend.next_token_logits("Hi")
    finally:
        backend.close()


def view(token: str) -> TokenView:
    return TokenView(token, len(token), None)


def test_stop_filter_carries_views_and_drops_the_stopped_tokens():
    out = StopStringFilter(["\n\n"], logprobs=False, views=True)
    pieces = ("Hello", " world", ".\n", "\nmore")
    chunks: list[Any] = [out.feed(p, 1, (), [view(p)]) for p in pieces]
    assert out.stopped
    sent = [c for c in (*chunks, out.finish("stop", 3)) if c is not None]
    assert "".join(c.text for c in sent) == "Hello world."
    assert all(c.logprobs is None for c in sent)
    # ".\n" starts before the stop string and stays; "\nmore" lies inside it and is dropped
    assert [v.token for c in sent for v in c.views] == ["Hello", " world", ".\n"]


def test_stop_filter_holds_views_back_with_their_text():
    out = StopStringFilter(["</s>"], views=True)
    first = out.feed("ok <", 1, (), [view("ok <")])
    assert first is not None and first.text == "ok " and [v.token for v in first.views] == ["ok <"]
    second = out.feed("b", 1, (), [view("b")])
    assert second is not None and second.text == "<b" and [v.token for v in second.views] == ["b"]
    assert out.finish("length", 1).views == []
    assert StopStringFilter([]).feed("x").views is None
