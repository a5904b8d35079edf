"""API keys per user on a real server.py with SmolLM2, driven by the real ``openai`` client: alice (admin) and
bob (user) each have a key; a user's key chats but cannot load models; no key is a 401; a user over the
queue limit gets a 429 with Retry-After while the admin's request goes through; the queue shows each
their position. (tests/unit/test_api_auth.py has the same and more on a scripted backend.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import openai
import pytest
import yaml

from harness import make_dirs, start_server, stop_server, wait_until
from testdata import SMOLLM
from webui.accounts.keys import key_digest
from webui.accounts.passwords import hash_password

pytestmark = pytest.mark.integration

ALICE, BOB = "sk-webui-alice-integration", "sk-webui-bob-integration"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
#: A reply that goes on until the token limit (SmolLM2 would otherwise stop after a sentence).
ENDLESS = {"ban_eos_token": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("api-users")
    model_dir, user_dir = make_dirs(root)
    users = {
        "users": {
            "alice": {"password": hash_password("alice-pw"), "role": "admin"},
            "bob": {"password": hash_password("bob-pw")},
        }
    }
    (user_dir / "users.yaml").write_text(yaml.safe_dump(users), encoding="utf-8")
    keys = {"keys": {"alice": [key_digest(ALICE)], "bob": [key_digest(BOB)]}}
    (user_dir / "api-keys.yaml").write_text(yaml.safe_dump(keys), encoding="utf-8")
    # one slot, so that a queue forms (with slots the requests would run side by side)
    srv = start_server(
        root, model_dir, user_dir, "--api", "--model", SMOLLM, "--user-max-queued", "1", "--parallel", "1"
    )
    yield srv.url
    stop_server(srv)


def client(url: str, key: str) -> openai.OpenAI:
    # max_retries=0: the client would otherwise wait out a 429's Retry-After and try again by itself
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


def queue_of(url: str, key: str) -> list[dict]:
    r = httpx.get(url + "/v1/internal/queue", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def test_a_users_key_chats_and_no_key_is_refused(server):
    r = client(server, BOB).chat.completions.create(model=SMOLLM, messages=QUESTION, max_tokens=30, temperature=0)
    assert "Paris" in (r.choices[0].message.content or "")
    with pytest.raises(openai.AuthenticationError):
        client(server, "sk-webui-not-a-key").chat.completions.create(model=SMOLLM, messages=QUESTION, max_tokens=5)
    r = httpx.post(server + "/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 5}, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    mine = httpx.get(server + "/v1/internal/requests", headers={"x-api-key": BOB}, timeout=10).json()["data"]
    assert mine and {s["user"] for s in mine} == {"bob"}


def test_only_the_admins_key_loads_a_model(server):
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(server, BOB).post("/internal/model/load", body={"model_name": SMOLLM}, cast_to=httpx.Response)
    assert "admin" in str(refused.value)
    loaded = client(server, ALICE).post(
        "/internal/model/load", body={"model_name": SMOLLM, "options": {"n_ctx": 2048}}, cast_to=httpx.Response
    )
    assert loaded.json()["model"] == SMOLLM
    r = client(server, BOB).chat.completions.create(model=SMOLLM, messages=QUESTION, max_tokens=5)
    assert r.usage.completion_tokens > 0  # the model the admin loaded serves everyone


def test_a_user_over_the_queue_limit_gets_429_while_the_admins_request_goes_through(server):
    bob, alice = client(server, BOB), client(server, ALICE)
    long_one = bob.chat.completions.create(
        model=SMOLLM, messages=QUESTION, max_tokens=1500, stream=True, extra_body=ENDLESS
    )
    answers: dict[str, str] = {}
    try:
        next(iter(long_one))  # bob's generation is running
        admins = threading.Thread(
            target=lambda: answers.update(
                alice=alice.chat.completions.create(model=SMOLLM, messages=QUESTION, max_tokens=20)
                .choices[0]
                .message.content
                or ""
            )
        )
        admins.start()  # an admin has no limit: queued behind bob's
        wait_until(lambda: len(queue_of(server, BOB)) == 2, "alice's request queued")
        assert [(e["position"], e["user"], e["mine"], e["state"]) for e in queue_of(server, BOB)] == [
            (0, "bob", True, "running"),
            (1, "another user", False, "waiting"),
        ]
        with pytest.raises(openai.RateLimitError) as refused:
            bob.chat.completions.create(model=SMOLLM, messages=QUESTION, max_tokens=5, stream=True)
        assert int(refused.value.response.headers["retry-after"]) >= 1
        assert "running or waiting" in refused.value.message and "admin" in refused.value.message
    finally:
        long_one.close()  # the server cancels bob's generation: alice's turn comes
    admins.join(60)
    assert answers.get("alice")


def test_the_queue_shows_a_waiting_user_their_position(server):
    alice, bob = client(server, ALICE), client(server, BOB)
    long_one = alice.completions.create(
        model=SMOLLM, prompt="Once upon a time", max_tokens=1500, stream=True, extra_body=ENDLESS
    )
    done: list[int] = []
    try:
        next(iter(long_one))
        bobs = threading.Thread(
            target=lambda: done.append(
                bob.completions.create(model=SMOLLM, prompt="Hello", max_tokens=5).usage.completion_tokens
            )
        )
        bobs.start()
        wait_until(lambda: len(queue_of(server, BOB)) == 2, "bob's request queued")
        running, waiting = queue_of(server, BOB)
        assert (running["user"], running["state"], running["mine"]) == ("another user", "running", False)
        assert (waiting["position"], waiting["user"], waiting["mine"]) == (1, "bob", True)
        assert waiting["estimated_wait_seconds"] >= 0 and waiting["waited_seconds"] >= 0
        assert [e["user"] for e in queue_of(server, ALICE)] == ["alice", "bob"]  # the admin sees names
    finally:
        long_one.close()
    bobs.join(60)
    assert done and done[0] > 0
    wait_until(lambda: queue_of(server, BOB) == [], "the queue emptied")
