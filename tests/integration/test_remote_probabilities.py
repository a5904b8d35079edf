"""The Notebook's "Show probabilities" on the remote loader, against llama-cpp-python's own server
(``python -m llama_cpp.server``, which we did not write) on SmolLM2.

The server's ``/v1/completions`` returns each token's ``logprobs`` (the top n alternatives of the
model's raw distribution), so the Notebook shows "before"-only views: the drawn token's probability
and the server's candidates, with no "after" column (a server does not say what its samplers did).
Every number is checked against the server's own answer to the same request, asked directly.
The half where a server sends no logprobs is in tests/unit/test_remote_logprobs.py (a scripted server).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api_fakes import api_only_app
from server_process import start_llama_cpp_server
from testdata import PARIS_PROMPT
from webui.generation.scheduler import Generator
from webui.loaders.base import StreamExtras
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams
from webui.probabilities import DEFAULT_CANDIDATES, current_view_kind, generate_with_views
from webui.services import Services
from webui.settings import Settings
from webui.ui.probabilities_ui import notebook_view

pytestmark = pytest.mark.integration
MAX_TOKENS = 12
GREEDY = SamplingParams(do_sample=False, max_tokens=MAX_TOKENS)
#: How far apart two runs' logprobs of one token may be (see :func:`servers_own_answer`).
RUNS_APART = 0.05


@pytest.fixture(scope="module")
def peer(smollm_path, tmp_path_factory) -> Iterator[str]:
    srv = start_llama_cpp_server(smollm_path, tmp_path_factory.mktemp("peer"), n_ctx=1024)
    yield srv.url
    srv.stop()


@pytest.fixture(scope="module")
def remote(peer) -> Iterator[tuple[ModelManager, Generator]]:
    models = ModelManager("/nonexistent", LoadOptions(remote_url=peer))
    models.load("", "remote")
    try:
        yield models, Generator(models)
    finally:
        models.unload()


def servers_own_answer(url: str, prompt: str, top: int) -> dict[str, Any]:
    """The peer's answer to the same greedy request, not streamed, asked without our code.

    Its numbers match another run's only within :data:`RUNS_APART`: the server reuses the prompt
    it read last, and the logits of a prompt read afresh (one batch) differ a little from those of a
    prompt whose last token alone is read again (measured: "The" at 54.8% and 53.6%).
    """
    body = {"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0.0, "logprobs": top, "stream": False}
    r = httpx.post(url + "/v1/completions", json=body, timeout=120)
    r.raise_for_status()
    logprobs = r.json()["choices"][0]["logprobs"]
    assert logprobs and logprobs["tokens"], "llama_cpp.server returned no logprobs from /v1/completions"
    return logprobs


def test_the_remote_loader_finds_out_that_the_server_returns_logprobs(remote):
    models, _ = remote
    backend = models.current.backend
    assert backend.api == "completions"
    assert backend.capabilities.logprobs and not backend.capabilities.sampler_views
    assert current_view_kind(models) == "before"  # the Notebook's note says: before the samplers only


def test_a_notebook_generation_on_a_server_shows_its_before_only_probabilities(remote, peer):
    models, gen = remote
    viewed = generate_with_views(gen, PARIS_PROMPT, GREEDY)
    chunks = list(viewed)
    text = "".join(c.text for c in chunks)
    assert "Paris" in text and viewed.kind == "before"
    streamed = [e for c in chunks for e in c.logprobs or ()]  # what the API would return for this run
    own = servers_own_answer(peer, PARIS_PROMPT, DEFAULT_CANDIDATES)

    # one view per generated token, the same tokens the server lists, spelling out the text
    assert [t.token for t in viewed.tokens] == own["tokens"]
    assert "".join(t.token for t in viewed.tokens) == text
    assert viewed.job.stats.completion_tokens >= len(viewed.tokens)
    for token, entry, logprob in zip(viewed.tokens, streamed, own["token_logprobs"], strict=True):
        view = token.view
        assert view is not None and view.after == ()  # no "after": the server does not say
        probs = [c.prob for c in view.before]
        assert len(probs) == DEFAULT_CANDIDATES
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
        drawn = next(c.prob for c in view.before if c.id == token.id)
        assert 0 < drawn <= 1
        assert drawn == math.exp(entry.logprob)  # the page's number is the API's logprob of the same run
        assert math.log(drawn) == pytest.approx(logprob, abs=RUNS_APART)  # and the server's own, asked apart
        assert view.before[0].id == token.id  # greedy: the drawn token is the top candidate

    # what the page shows: each token's table of candidates before the samplers, no "after" column
    viewed.resolve_texts()  # a server's candidates come with their texts: nothing to look up
    value = notebook_view(viewed, "en")
    assert "before the samplers" in value["legend"]
    assert len(value["tokens"]) == len(viewed.tokens) and value["final"]
    first = value["tokens"][0]
    assert first["only_before"] and "before the samplers" in first["stats"]
    assert len(first["rows"]) == DEFAULT_CANDIDATES and first["rows"][0]["drawn"]
    assert all(r["after"] is None for r in first["rows"])
    # a click on a candidate branches there: the prompt plus that candidate's text
    second = viewed.tokens[0].view.before[1]
    assert viewed.branch_text(0, second.id) == PARIS_PROMPT + viewed.texts[second.id]


def test_the_loader_streams_the_logprobs_the_server_computed(remote, peer):
    """The path the API's ``logprobs`` take: each token's logprob and top alternatives, as the server gave them."""
    models, _ = remote
    chunks = list(models.current.backend.stream(PARIS_PROMPT, GREEDY, threading.Event(), StreamExtras(top_logprobs=3)))
    entries = [e for c in chunks for e in c.logprobs or ()]
    own = servers_own_answer(peer, PARIS_PROMPT, 3)
    assert [e.token for e in entries] == own["tokens"]
    assert [e.logprob for e in entries] == pytest.approx(own["token_logprobs"], abs=RUNS_APART)
    for entry in entries:
        assert len(entry.top) == 3 and entry.top[0].token == entry.token  # greedy: the best one was drawn
        assert [t.logprob for t in entry.top] == sorted((t.logprob for t in entry.top), reverse=True)
    # not asked: the request does not ask the server either, and the chunks carry none
    plain = list(models.current.backend.stream(PARIS_PROMPT, GREEDY, threading.Event()))
    assert all(c.logprobs is None for c in plain) and "Paris" in "".join(c.text for c in plain)


def test_this_apps_completions_api_returns_the_servers_logprobs(peer, tmp_path):
    """/v1/completions with ``logprobs`` on this app, its model the remote server: OpenAI's shape, the server's numbers."""
    services = Services.build(Settings(user_data_dir=tmp_path, api=True))
    services.load_model("", "remote", LoadOptions(remote_url=peer))
    try:
        client = TestClient(api_only_app(services))
        body = {"prompt": PARIS_PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0, "logprobs": 2}
        r = client.post("/v1/completions", json=body)
        assert r.status_code == 200, r.text
        logprobs = r.json()["choices"][0]["logprobs"]
        own = servers_own_answer(peer, PARIS_PROMPT, 2)
        assert logprobs["tokens"] == own["tokens"]
        assert logprobs["token_logprobs"] == pytest.approx(own["token_logprobs"], abs=RUNS_APART)
        assert all(len(top) == 2 for top in logprobs["top_logprobs"])
        # echo (the prompt's logprobs) is refused out loud: a streamed answer from the server has none
        r = client.post("/v1/completions", json={**body, "echo": True})
        assert r.status_code >= 400 and "echo" in r.text
    finally:
        services.models.unload()
