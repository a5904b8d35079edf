"""OpenAI compatibility gaps found with real clients, each once silently wrong (issue 17, item 8).

Raw HTTP against a real server.py on SmolLM2, so the exact shapes are checked; the SDK-level
behaviour (tools, parse(), logprobs with the openai client, AutoGen, LangChain...) is in
test_agent_clients.py.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from harness import make_dirs, start_server, stop_server
from testdata import SMOLLM

pytestmark = pytest.mark.integration
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("compat")
    srv = start_server(root, *make_dirs(root), "--api", "--model", SMOLLM, ctx_size=2048)
    with httpx.Client(base_url=srv.url, timeout=120) as http:
        yield srv, http
    stop_server(srv)


def chat(http: httpx.Client, **body) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 4, "temperature": 0, **body})


def assert_openai_error(r: httpx.Response, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "code"}, error
    for word in words:
        assert word.lower() in error["message"].lower(), error
    return error


def test_content_as_a_list_of_text_parts_is_joined(api):
    _, http = api
    parts = [{"type": "text", "text": "What is the capital of France? "}, {"type": "text", "text": "One word."}]
    r = chat(http, messages=[{"role": "user", "content": parts}], max_tokens=8)
    assert r.status_code == 200, r.text
    assert "Paris" in r.json()["choices"][0]["message"]["content"]
    image = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    assert_openai_error(chat(http, messages=[{"role": "user", "content": image}]), 400, "image")


def test_max_completion_tokens_limits_the_reply(api):
    _, http = api
    r = chat(http, messages=[{"role": "user", "content": "Count from one to fifty."}], max_completion_tokens=3)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 3
    assert r.json()["choices"][0]["finish_reason"] == "length"


def test_n_choices_each_with_an_index(api):
    _, http = api
    r = chat(http, n=2, temperature=1.0, seed=5)
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    r = http.post("/v1/completions", json={"prompt": "Once upon a time", "max_tokens": 3, "n": 3, "seed": 1})
    assert [c["index"] for c in r.json()["choices"]] == [0, 1, 2]
    assert r.json()["usage"]["completion_tokens"] == 9
    assert_openai_error(chat(http, n=50), 400, "n")


def test_streamed_n_and_include_usage(api):
    _, http = api
    body = {"messages": HELLO, "max_tokens": 3, "stream": True, "n": 2, "stream_options": {"include_usage": True}}
    events = []
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    indexes = {c["index"] for e in events for c in e["choices"]}
    assert indexes == {0, 1}
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 6


def test_get_one_model_and_openai_shaped_404s(api):
    _, http = api
    r = http.get(f"/v1/models/{SMOLLM}")
    assert r.status_code == 200 and r.json()["id"] == SMOLLM
    assert_openai_error(http.get("/v1/models/no-such-model"), 404, "no-such-model")
    assert_openai_error(http.get("/v1/no/such/route"), 404, "/v1/no/such/route")
    client = openai.OpenAI(base_url=http.base_url.join("/v1").__str__(), api_key="x", max_retries=0)
    assert client.models.retrieve(SMOLLM).id == SMOLLM
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_a_body_that_is_not_json_is_an_openai_shaped_400(api):
    _, http = api
    r = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert_openai_error(r, 400)


def test_a_lone_surrogate_is_a_400_not_a_500(api):
    _, http = api
    raw = b'{"messages": [{"role": "user", "content": "bad \\ud800 text"}], "max_tokens": 2}'
    r = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert_openai_error(r, 400, "surrogate")
    raw = b'{"prompt": "x \\udfff", "max_tokens": 2}'
    r = http.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
    assert_openai_error(r, 400, "surrogate")


def test_unknown_fields_are_named_in_a_header_and_unsupported_ones_refused(api):
    _, http = api
    r = chat(http, user="someone", some_new_field=1)
    assert r.status_code == 200
    assert r.headers["x-webui-ignored-fields"] == "some_new_field, user"
    assert "x-webui-ignored-fields" not in chat(http).headers
    assert_openai_error(chat(http, logit_bias={"50256": -100}), 400, "logit_bias")
    assert_openai_error(chat(http, functions=[{"name": "f"}]), 400, "tools")


def test_llama_cpp_servers_grammar_and_json_schema_fields_shape_the_reply(api):
    """Clients written for llama.cpp's server send ``grammar`` (our grammar_string) and ``json_schema`` as
    an object: the grammar was dropped (named only in a header) and the object refused."""
    _, http = api
    question = [{"role": "user", "content": "Is the sky blue? Explain."}]
    r = chat(http, messages=question, max_tokens=8, grammar='root ::= "yes" | "no"')
    assert r.status_code == 200, r.text
    assert "x-webui-ignored-fields" not in r.headers
    assert r.json()["choices"][0]["message"]["content"] in ("yes", "no")
    schema = {"type": "object", "properties": {"answer": {"type": "boolean"}}, "required": ["answer"]}
    r = chat(http, messages=question, max_tokens=24, json_schema=schema)
    assert r.status_code == 200, r.text
    assert isinstance(json.loads(r.json()["choices"][0]["message"]["content"])["answer"], bool)
    # and its names for the token limit, the penalty range, mirostat and ban-EOS (header empty: all used)
    body = {"messages": question, "n_predict": 3, "ignore_eos": True, "penalty_last_n": 16, "mirostat": 2}
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert "x-webui-ignored-fields" not in r.headers
    assert r.json()["usage"]["completion_tokens"] == 3


def test_bad_tool_requests_are_clear_400s(api):
    _, http = api
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    orphan = [*HELLO, {"role": "tool", "tool_call_id": "call_x", "content": "42"}]
    assert_openai_error(chat(http, messages=orphan), 400, "call_x")
    bad_schema = {"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}
    assert_openai_error(chat(http, tools=[bad_schema]), 400, "tools[0]")
    named = {"type": "function", "function": {"name": "g"}}
    assert_openai_error(chat(http, tools=[tool], tool_choice=named), 400, "'g'")
    assert_openai_error(chat(http, logprobs=True, top_logprobs=1000), 400, "top_logprobs")


def test_a_prompt_that_can_never_fit_is_refused_before_it_is_tokenized(api):
    srv, http = api
    huge = "word " * 800_000  # 4 MB (under the 8 MB body limit): at least 4 MB / longest-token bytes tokens
    r = chat(http, messages=[{"role": "user", "content": huge}])
    assert_openai_error(r, 400, "at least", "context")  # the cheap bound, before the queue
    assert srv.health()["waiting"] == 0
    r = chat(http)  # the server still answers
    assert r.status_code == 200


def test_completion_logprobs_and_echo_in_the_legacy_shape(api):
    _, http = api
    body = {"prompt": "The capital of France is", "max_tokens": 3, "temperature": 0, "logprobs": 2}
    r = http.post("/v1/completions", json=body)
    choice = r.json()["choices"][0]
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == 3
    assert "".join(lp["tokens"]) == choice["text"]
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True):
        assert logprob <= 0 and len(top) == 2 and max(top.values()) == pytest.approx(logprob)  # greedy: the best
        assert top[token] == pytest.approx(logprob)
    r = http.post("/v1/completions", json={**body, "echo": True})
    choice = r.json()["choices"][0]
    lp = choice["logprobs"]
    assert choice["text"].startswith("The capital of France is")
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None  # the first token has no context
    assert len(lp["tokens"]) > 3 and lp["text_offset"] == sorted(lp["text_offset"])
    r = http.post("/v1/completions", json={**body, "echo": True, "logprobs": None})
    assert r.json()["choices"][0]["text"].startswith("The capital of France is")
    assert r.json()["choices"][0]["logprobs"] is None
