"""Several models behind one API, through the real ``openai`` client: requests routed by their ``model``
field, a 404 naming the loaded models, loading on demand, the idle TTL, and a model of another server
(the remote loader, in front of llama-cpp-python's own server) served beside a local GGUF."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from harness import Server, make_dirs, start_server, stop_server, wait_until
from server_process import start_llama_cpp_server
from testdata import GEMMA, SMOLLM

pytestmark = pytest.mark.integration

BUDGET = ("--models-budget-mb", "3000")


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)


def ask(url: str, model: str) -> Any:
    return client(url).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=6, temperature=0
    )


def loaded(url: str) -> dict[str, dict[str, Any]]:
    """The loaded models by name, as GET /v1/models lists them."""
    return {m["id"]: m for m in httpx.get(url + "/v1/models").json()["data"] if m["loaded"] and not m.get("embedding")}


def load(url: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(url + "/v1/internal/model/load", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> Iterator[Server]:
    """SmolLM2 and gemma loaded side by side (gemma loaded last: the main model)."""
    root = tmp_path_factory.mktemp("routing")
    model_dir, user_dir = make_dirs(root)
    srv = start_server(root, model_dir, user_dir, "--api", "--model", SMOLLM, "--load-on-demand", *BUDGET)
    load(srv.url, {"model_name": GEMMA})
    yield srv
    stop_server(srv)


def test_each_request_goes_to_the_model_it_names(two):
    assert set(loaded(two.url)) == {SMOLLM, GEMMA}
    assert loaded(two.url)[GEMMA]["main"] and not loaded(two.url)[SMOLLM]["main"]
    before = {name: entry["requests"] for name, entry in loaded(two.url).items()}
    assert ask(two.url, SMOLLM).model == SMOLLM
    assert ask(two.url, GEMMA).model == GEMMA
    assert ask(two.url, "smollm2-135m-instruct.q4_1").model == SMOLLM  # any case, without .gguf
    after = {name: entry["requests"] for name, entry in loaded(two.url).items()}
    assert after == {SMOLLM: before[SMOLLM] + 2, GEMMA: before[GEMMA] + 1}
    for entry in loaded(two.url).values():
        assert entry["memory_bytes"] > 50_000_000  # each GGUF's RAM, as the Model tab shows it


def test_a_name_that_is_not_loaded_is_a_404_naming_the_loaded_models(two):
    with pytest.raises(openai.NotFoundError) as caught:
        ask(two.url, "gpt-4o-mini")
    message = str(caught.value)
    assert SMOLLM in message and GEMMA in message
    r = httpx.post(
        two.url + "/v1/completions", json={"model": "no-such-model", "prompt": "Hi", "max_tokens": 2}, timeout=60
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_an_unloaded_model_is_loaded_again_when_a_request_names_it(two):
    r = httpx.post(two.url + "/v1/internal/model/unload", json={"model_name": SMOLLM}, timeout=60)
    assert r.status_code == 200 and r.json()["loaded"] == [GEMMA]
    assert ask(two.url, SMOLLM).model == SMOLLM  # --load-on-demand
    models = loaded(two.url)
    assert set(models) == {SMOLLM, GEMMA}
    assert models[GEMMA]["main"]  # a model loaded for a request does not take over the tabs


def test_an_idle_model_is_unloaded_after_the_ttl_and_the_main_one_stays(tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    srv = start_server(
        tmp_path, model_dir, user_dir, "--api", "--model", SMOLLM, "--load-on-demand", "--model-ttl", "3", *BUDGET
    )
    try:
        assert ask(srv.url, GEMMA).model == GEMMA
        assert set(loaded(srv.url)) == {SMOLLM, GEMMA}
        wait_until(lambda: set(loaded(srv.url)) == {SMOLLM}, "gemma unloaded after 3 s without a request", 60)
        assert "Unloading " + GEMMA in srv.log.read_text()
        assert ask(srv.url, GEMMA).model == GEMMA  # and it comes back when asked for
    finally:
        stop_server(srv)


def test_a_model_of_another_server_is_served_beside_a_local_gguf(tmp_path, smollm_path):
    (tmp_path / "peer").mkdir()
    (tmp_path / "ours").mkdir()
    peer = start_llama_cpp_server(smollm_path, tmp_path / "peer")
    model_dir, user_dir = make_dirs(tmp_path / "ours")
    srv = start_server(tmp_path / "ours", model_dir, user_dir, "--api", "--model", GEMMA, *BUDGET)
    try:
        remote = load(srv.url, {"model_name": "cluster", "loader": "remote", "options": {"remote_url": peer.url}})
        name = remote["model"]  # the name the other server serves its model under
        models = loaded(srv.url)
        assert set(models) == {GEMMA, name}
        assert models[name]["loader"] == "remote" and models[name]["memory_bytes"] == 0
        assert ask(srv.url, name).model == name
        assert ask(srv.url, GEMMA).model == GEMMA
        assert "POST /v1/" in peer.log.read_text()  # the remote request reached the other server
    finally:
        stop_server(srv)
        peer.stop()
