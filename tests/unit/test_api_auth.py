"""Who calls /v1: API keys per user (Bearer or x-api-key), admin-only routes, each user's requests and queue,
and the per-user limits as HTTP answers (429 with Retry-After, 400 for too many tokens).

Scripted FakeBackend over the app's /v1 routers; tests/integration/test_api_users.py does the same with
SmolLM2 and the real openai client.
"""

from __future__ import annotations

import threading
import time

import fastapi
import pytest
import yaml
from fastapi.testclient import TestClient
from starlette.requests import Request

from embedding_models import fake_models
from fakes import FakeBackend
from webui.accounts.keys import key_digest
from webui.api import create_api, install_error_handlers
from webui.api.anthropic import create_messages_api
from webui.api.auth import current_user, key_of, view_for
from webui.api.embeddings import create_embeddings_api
from webui.errors import PermissionDeniedError, UnauthorizedError
from webui.services import Services
from webui.settings import Settings

ALICE, BOB = "sk-webui-alice-key", "sk-webui-bob-key"
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def build(
    tmp_path, loaders, *, users: bool = True, keys: bool = True, api_key: str | None = None, **settings
) -> Services:
    """A server with two models, alice (admin) and bob (user) in the users file (unless ``users`` is false),
    and a key each in api-keys.yaml (unless ``keys`` is false)."""
    user_dir = tmp_path / "user"
    models = user_dir / "models"
    models.mkdir(parents=True)
    for name in ("a.gguf", "b.gguf"):
        (models / name).write_bytes(b"GGUF ok")
    if users:
        doc = {"users": {"alice": {"password": "pw-alice", "role": "admin"}, "bob": {"password": "pw-bob"}}}
        (user_dir / "users.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    if keys:
        doc = {"keys": {"alice": [key_digest(ALICE)], "bob": [key_digest(BOB)]}}
        (user_dir / "api-keys.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    services = Services.build(Settings(user_data_dir=user_dir, api=True, api_key=api_key, **settings), loaders=loaders)
    services.embeddings, _ = fake_models(tmp_path)
    services.load_model("a.gguf", "fake")
    return services


def client_of(services: Services) -> TestClient:
    """The /v1 routers as webui/app.py mounts them (without the UI)."""
    app = fastapi.FastAPI()
    install_error_handlers(app)
    app.include_router(create_messages_api(services), prefix="/v1")
    app.include_router(create_embeddings_api(services), prefix="/v1")
    app.include_router(create_api(services), prefix="/v1")
    return TestClient(app)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def request_with(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "query_string": b""})


def wait_until(condition, timeout=5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


# -- the dependency ---------------------------------------------------------------------------------------


def test_the_key_comes_from_x_api_key_or_a_bearer_token():
    assert key_of(request_with({"x-api-key": "k1"})) == "k1"
    assert key_of(request_with({"Authorization": "Bearer k2"})) == "k2"
    assert key_of(request_with({"Authorization": "bearer  k3 "})) == "k3"
    assert key_of(request_with({"x-api-key": "k1", "Authorization": "Bearer k2"})) == "k1"
    assert key_of(request_with({"Authorization": "Basic abc"})) is None
    assert key_of(request_with({"Authorization": "Bearer "})) is None
    assert key_of(request_with({})) is None


def test_current_user_is_the_keys_user_and_none_without_keys(tmp_path, loaders):
    services = build(tmp_path, loaders)
    caller = current_user(services)
    bob = caller(request_with(bearer(BOB)))
    assert bob is not None and bob.name == "bob" and not bob.is_admin
    alice = caller(request_with({"x-api-key": ALICE}))
    assert alice is not None and alice.is_admin
    for headers in ({}, bearer("sk-webui-wrong"), {"x-api-key": ""}):
        with pytest.raises(UnauthorizedError):
            caller(request_with(headers))
    open_server = Services.build(Settings(user_data_dir=tmp_path / "open", api=True), loaders=loaders)
    assert current_user(open_server)(request_with({})) is None
    assert current_user(open_server)(request_with(bearer("anything"))) is None  # no keys: as before


def test_the_admin_key_acts_as_the_main_admin(tmp_path, loaders):
    services = build(tmp_path, loaders, api_key="sk-admin")
    user = current_user(services)(request_with(bearer("sk-admin")))
    assert user is not None and user.name == "alice" and user.is_admin
    no_users = Services.build(Settings(user_data_dir=tmp_path / "solo", api=True, api_key="sk-admin"), loaders=loaders)
    user = current_user(no_users)(request_with(bearer("sk-admin")))
    assert user is not None and user.is_admin


def test_a_key_user_without_a_users_file_keeps_their_role(tmp_path, loaders):
    """API keys alone (no log-in for the UI): bob's view is the server's data, but he is still no admin."""
    services = build(tmp_path, loaders, users=False)
    bob = current_user(services)(request_with(bearer(BOB)))
    assert bob is not None
    view = view_for(services, bob)
    assert view.user == bob and not view.is_admin and view.chats is services.chats
    with pytest.raises(PermissionDeniedError):
        view.unload_model()
    assert services.models.current is not None
    assert view_for(services, None) is services


# -- over HTTP ----------------------------------------------------------------------------------------------


def test_without_a_key_every_route_is_a_401_in_its_apis_shape(tmp_path, loaders):
    client = client_of(build(tmp_path, loaders))
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models", headers=bearer("sk-webui-wrong")).status_code == 401
    assert client.get("/v1/no-such-route").status_code == 401  # the key first: routes are not probed without one
    assert client.post("/v1/embeddings", json={"input": "x"}).status_code == 401
    r = client.post(
        "/v1/messages", json={"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"


def test_a_users_key_chats_and_its_requests_are_theirs(tmp_path, loaders):
    services = build(tmp_path, loaders)
    client = client_of(services)
    r = client.post("/v1/chat/completions", json=CHAT, headers=bearer(BOB))
    assert r.status_code == 200, r.text
    r = client.post("/v1/completions", json={"prompt": "Once", "max_tokens": 2}, headers={"x-api-key": ALICE})
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]},
        headers={"x-api-key": BOB},
    )
    assert r.status_code == 200, r.text
    assert [s.user for s in services.generator.recent] == ["bob", "alice", "bob"]
    bobs = client.get("/v1/internal/requests", headers=bearer(BOB)).json()["data"]
    assert [s["user"] for s in bobs] == ["bob", "bob"]  # not alice's
    everyone = client.get("/v1/internal/requests", headers=bearer(ALICE)).json()["data"]
    assert [s["user"] for s in everyone] == ["bob", "alice", "bob"]


def test_admin_routes_refuse_a_users_key_and_take_an_admins(tmp_path, loaders):
    services = build(tmp_path, loaders)
    client = client_of(services)
    for path, body in [
        ("/v1/internal/model/load", {"model_name": "b.gguf", "loader": "fake"}),
        ("/v1/internal/model/unload", None),
        ("/v1/internal/embedding-model/load", {"model_name": "embed.gguf"}),
        ("/v1/internal/embedding-model/unload", None),
    ]:
        r = client.post(path, json=body, headers=bearer(BOB))
        assert r.status_code == 403, (path, r.text)
        error = r.json()["error"]
        assert error["code"] == "permission_denied" and "admin" in error["message"]
    assert services.models.current is not None and services.models.current.name == "a.gguf"
    r = client.post("/v1/internal/model/load", json={"model_name": "b.gguf", "loader": "fake"}, headers=bearer(ALICE))
    assert r.status_code == 200 and r.json()["model"] == "b.gguf"
    r = client.post("/v1/internal/embedding-model/load", json={"model_name": "embed.gguf"}, headers=bearer(ALICE))
    assert r.status_code == 200 and r.json()["model"] == "embed.gguf"
    assert client.post("/v1/internal/model/unload", headers=bearer(ALICE)).json() == {"model": None, "loaded": []}
    audit = (tmp_path / "user" / "logs" / "audit.jsonl").read_text(encoding="utf-8")
    assert '"actor": "bob"' in audit and '"actor": "alice"' in audit


def test_with_log_in_and_no_keys_a_caller_is_a_guest_who_cannot_load_or_unload(tmp_path, loaders):
    """Log-in on the page but no API keys: /v1 must not be a side door with the admin's rights. A caller
    without a key chats with the loaded model as a guest; the admin's routes are refused, saying how to
    get an admin key; nothing is unloaded."""
    services = build(tmp_path, loaders, keys=False)
    client = client_of(services)
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text
    for path, body in [
        ("/v1/internal/model/load", {"model_name": "b.gguf", "loader": "fake"}),
        ("/v1/internal/model/unload", None),
        ("/v1/internal/embedding-model/load", {"model_name": "embed.gguf"}),
        ("/v1/internal/embedding-model/unload", None),
    ]:
        r = client.post(path, json=body)
        assert r.status_code == 403, (path, r.text)
        message = r.json()["error"]["message"]
        assert "admin" in message and "api-keys.yaml" in message and "--api-key" in message, message
    assert [m.name for m in services.models.loaded_models()] == ["a.gguf"]
    # the admin's key (--api-key) makes keys required: the admin loads, a keyless caller is a 401
    admin = build(tmp_path / "with-key", loaders, keys=False, api_key="sk-admin")
    client = client_of(admin)
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 401
    r = client.post(
        "/v1/internal/model/load", json={"model_name": "b.gguf", "loader": "fake"}, headers=bearer("sk-admin")
    )
    assert r.status_code == 200, r.text


def test_a_user_may_load_a_model_the_admin_allowed(tmp_path, loaders):
    client = client_of(build(tmp_path, loaders, user_models="b.gguf"))
    r = client.post("/v1/internal/model/load", json={"model_name": "b.gguf", "loader": "fake"}, headers=bearer(BOB))
    assert r.status_code == 200, r.text
    r = client.post("/v1/internal/model/load", json={"model_name": "a.gguf", "loader": "fake"}, headers=bearer(BOB))
    assert r.status_code == 403


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/chat/completions", {**CHAT, "stream": True}),
        ("/v1/completions", {"prompt": "Once", "max_tokens": 2}),
        ("/v1/messages", {"model": "m", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}),
    ],
)
def test_a_user_over_the_queue_limit_gets_429_with_retry_after(tmp_path, loaders, path, body):
    services = build(tmp_path, loaders, user_max_queued=1)
    client = client_of(services)
    gate = FakeBackend.gate = threading.Event()
    try:
        held = services.generator.submit("bob's long one", user="bob")  # as if from bob's page
        wait_until(lambda: services.generator.active is held)
        r = client.post(path, json=body, headers=bearer(BOB))
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) >= 1
        if path == "/v1/messages":
            assert r.json()["error"]["type"] == "rate_limit_error"
        else:
            assert r.json()["error"]["code"] == "rate_limit_exceeded"
        message = r.text
        assert "1 generation running or waiting" in message and "admin" in message
        done: list[int] = []
        alice = threading.Thread(
            target=lambda: done.append(client.post(path, json=body, headers=bearer(ALICE)).status_code)
        )
        alice.start()  # an admin has no limit: queued behind bob's job
        wait_until(lambda: services.generator.waiting() == 1)
        gate.set()
        alice.join(10)
        assert done == [200]
        held.result()
        assert not services.cancels._events  # the refused request left no cancel behind
    finally:
        gate.set()


def test_n_choices_are_queued_all_or_none(tmp_path, loaders):
    services = build(tmp_path, loaders, user_max_queued=2)
    client = client_of(services)
    r = client.post("/v1/chat/completions", json={**CHAT, "n": 3}, headers=bearer(BOB))
    assert r.status_code == 400 and r.json()["error"]["code"] == "over_user_limit"
    assert "3 answers" in r.json()["error"]["message"]
    gate = FakeBackend.gate = threading.Event()
    try:
        held = services.generator.submit("bob's long one", user="bob")
        wait_until(lambda: services.generator.active is held)
        r = client.post("/v1/completions", json={"prompt": "Once", "max_tokens": 2, "n": 2}, headers=bearer(BOB))
        assert r.status_code == 429
        # the first choice, queued before the second was refused, is cancelled and forgotten
        assert services.generator.queue_view("bob", is_admin=False)[1:] == []
        assert not services.cancels._events
    finally:
        gate.set()
    held.result()


def test_the_token_limit_refuses_a_larger_ask_and_caps_an_unsaid_one(tmp_path, loaders):
    services = build(tmp_path, loaders, user_max_tokens=20)
    client = client_of(services)
    r = client.post("/v1/completions", json={"prompt": "Once", "max_tokens": 500}, headers=bearer(BOB))
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "500" in message and "20" in message and "admin" in message
    r = client.post("/v1/completions", json={"prompt": "Once"}, headers=bearer(BOB))  # the default is 384
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 20
    r = client.post("/v1/completions", json={"prompt": "Once", "max_tokens": 30}, headers=bearer(ALICE))
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 30  # not for admins
    r = client.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 500, "messages": [{"role": "user", "content": "Hi"}]},
        headers={"x-api-key": BOB},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_the_queue_shows_each_user_their_position(tmp_path, loaders):
    services = build(tmp_path, loaders)
    client = client_of(services)
    gate = FakeBackend.gate = threading.Event()
    try:
        held = services.generator.submit("alice's", user="alice")
        wait_until(lambda: services.generator.active is held)
        bobs = threading.Thread(
            target=lambda: client.post("/v1/completions", json={"prompt": "Once", "max_tokens": 2}, headers=bearer(BOB))
        )
        bobs.start()
        wait_until(lambda: services.generator.waiting() == 1)
        view = client.get("/v1/internal/queue", headers=bearer(BOB)).json()["data"]
        assert [(e["position"], e["user"], e["mine"], e["state"]) for e in view] == [
            (0, "another user", False, "running"),
            (1, "bob", True, "waiting"),
        ]
        assert view[1]["estimated_wait_seconds"] > 0
        admin_view = client.get("/v1/internal/queue", headers=bearer(ALICE)).json()["data"]
        assert [e["user"] for e in admin_view] == ["alice", "bob"]
    finally:
        gate.set()
    bobs.join(10)
    held.result()
    assert client.get("/v1/internal/queue", headers=bearer(BOB)).json()["data"] == []
