"""POST /v1/embeddings on a scripted embedder (fast): OpenAI's shapes, base64, token ids, errors, auth.
The real models through the real server and the real clients are in tests/integration/test_embeddings_real.py."""

from __future__ import annotations

import base64

import fastapi
import numpy as np
import pytest
from fastapi.testclient import TestClient

from embedding_models import FakeEmbedder, fake_models
from webui.api import create_api, install_error_handlers
from webui.api.embeddings import EmbeddingRequest, create_embeddings_api, encode
from webui.services import Services
from webui.settings import Settings, build_parser, split_values


def client_for(tmp_path, loaders, *, api_key: str | None = None, load: bool = True) -> tuple[TestClient, Services]:
    settings = Settings(user_data_dir=tmp_path / "user", api=True, api_key=api_key)
    services = Services.build(settings, tmp_path / "settings.yaml", loaders=loaders)
    services.embeddings, _ = fake_models(tmp_path)
    if load:
        services.embeddings.load("embed.gguf")
    app = fastapi.FastAPI()
    install_error_handlers(app)
    # as webui/app.py mounts them: ours before the OpenAI router and its catch-all 404
    app.include_router(create_embeddings_api(services), prefix="/v1")
    app.include_router(create_api(services), prefix="/v1")
    return TestClient(app), services


def test_response_has_openais_shape(tmp_path, loaders):
    client, services = client_for(tmp_path, loaders)
    r = client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hello embedding world"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"object", "data", "model", "usage"} and body["object"] == "list"
    assert body["model"] == "embed.gguf"  # the model that answered, whatever the request named
    (item,) = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0 and len(item["embedding"]) == 8
    assert abs(np.linalg.norm(item["embedding"]) - 1) < 1e-6
    assert body["usage"] == {"prompt_tokens": 5, "total_tokens": 5}  # [CLS] 3 words [SEP]
    many = client.post("/v1/embeddings", json={"model": "m", "input": ["one", "two words", "three more words"]})
    assert [d["index"] for d in many.json()["data"]] == [0, 1, 2]
    assert (
        many.json()["data"][1]["embedding"]
        == client.post("/v1/embeddings", json={"model": "m", "input": "two words"}).json()["data"][0]["embedding"]
    )


def test_base64_is_little_endian_float32_of_the_same_vector(tmp_path, loaders):
    client, _ = client_for(tmp_path, loaders)
    texts = ["alpha beta", "gamma"]
    floats = client.post("/v1/embeddings", json={"input": texts, "encoding_format": "float"}).json()["data"]
    b64 = client.post("/v1/embeddings", json={"input": texts, "encoding_format": "base64"}).json()["data"]
    for f, b in zip(floats, b64, strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert decoded.tolist() == f["embedding"]  # exactly: both are the same float32 values
    assert encode([1.0, -2.5], "base64") == base64.b64encode(np.array([1.0, -2.5], "<f4").tobytes()).decode()


def test_dimensions_only_the_models_own(tmp_path, loaders):
    client, _ = client_for(tmp_path, loaders)
    assert client.post("/v1/embeddings", json={"input": "x", "dimensions": 8}).status_code == 200
    r = client.post("/v1/embeddings", json={"input": "x", "dimensions": 4})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "unsupported_feature" and "dimensions" in error["message"] and "8" in error["message"]


def test_token_ids_are_refused_unless_they_are_the_models_own(tmp_path, loaders):
    client, _ = client_for(tmp_path, loaders)
    r = client.post("/v1/embeddings", json={"input": [[9906, 1917]]})  # what LangChain sends after tiktoken
    assert r.status_code == 400 and "check_embedding_ctx_length=False" in r.json()["error"]["message"]
    assert client.post("/v1/embeddings", json={"input": [5, 6, 7]}).status_code == 400
    one = client.post("/v1/embeddings", json={"input": [5, 6, 7], "model_token_ids": True})
    assert one.status_code == 200 and len(one.json()["data"]) == 1 and one.json()["usage"]["prompt_tokens"] == 3
    two = client.post("/v1/embeddings", json={"input": [[5, 6], [7]], "model_token_ids": True}).json()
    assert len(two["data"]) == 2 and two["usage"]["prompt_tokens"] == 3
    out = client.post("/v1/embeddings", json={"input": [[5], [5000]], "model_token_ids": True})
    assert out.status_code == 400 and "Input 1" in out.json()["error"]["message"]


def test_bad_inputs_are_clear_400s(tmp_path, loaders):
    client, _ = client_for(tmp_path, loaders)
    long = " ".join(f"w{i}" for i in range(40))
    r = client.post("/v1/embeddings", json={"input": ["fine", long]})
    assert r.status_code == 400
    assert (
        r.json()["error"]["code"] == "context_length_exceeded"
        and "Input 1 is 42 tokens" in r.json()["error"]["message"]
    )
    cut = client.post("/v1/embeddings", json={"input": ["fine", long], "truncate": True})
    assert cut.status_code == 200 and cut.json()["usage"]["prompt_tokens"] == 3 + 16
    for body, words in (
        ({"input": ""}, "Input 0 is an empty string"),
        ({"input": []}, "empty list"),
        ({"input": ["a", 1]}, "input"),
        ('{"input": "\\ud800"}', "surrogate"),  # JSON can carry it; it is not text
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "m"}, "input"),
        ({"input": ["x"] * 2049}, "at most 2048"),
    ):
        if isinstance(body, str):
            r = client.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
        else:
            r = client.post("/v1/embeddings", json=body)
        assert r.status_code == 400, body
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert words in r.json()["error"]["message"], (body, r.json())


def test_no_embedding_model_says_how_to_load_one(tmp_path, loaders):
    client, services = client_for(tmp_path, loaders, load=False)
    r = client.post("/v1/embeddings", json={"model": "m", "input": "hello"})
    assert r.status_code == 404
    error = r.json()["error"]
    assert error["code"] == "no_embedding_model" and error["type"] == "invalid_request_error"
    assert "--embedding-model" in error["message"] and "Model tab" in error["message"]
    assert client.get("/v1/internal/embedding-model").json() == {"model": None}
    loaded = client.post("/v1/internal/embedding-model/load", json={"model_name": "other.gguf"}).json()
    assert loaded == {"model": "other.gguf", "kind": "fake", "dimensions": 8, "n_ctx": 16, "pooling": "mean"}
    assert client.post("/v1/embeddings", json={"input": "hello"}).json()["model"] == "other.gguf"
    missing = client.post("/v1/internal/embedding-model/load", json={"model_name": "nope.gguf"})
    assert missing.status_code == 404 and services.embeddings.current.name == "other.gguf"
    assert client.post("/v1/internal/embedding-model/unload").json() == {"model": None}
    assert client.post("/v1/embeddings", json={"input": "hello"}).status_code == 404


def test_ignored_fields_are_named_in_a_header(tmp_path, loaders):
    client, _ = client_for(tmp_path, loaders)
    r = client.post("/v1/embeddings", json={"input": "x", "user": "u-1", "fancy_option": 3})
    assert r.status_code == 200 and r.headers["x-webui-ignored-fields"] == "fancy_option, user"
    assert "x-webui-ignored-fields" not in client.post("/v1/embeddings", json={"input": "x"}).headers
    assert not client.post("/v1/embeddings", json={"input": "a b", "normalize": False}).json()["data"][0][
        "embedding"
    ] == pytest.approx(client.post("/v1/embeddings", json={"input": "a b"}).json()["data"][0]["embedding"])


def test_the_api_key_is_required_when_set(tmp_path, loaders):
    client, _ = client_for(tmp_path, loaders, api_key="s3cret")
    assert client.post("/v1/embeddings", json={"input": "x"}).status_code == 401
    ok = client.post("/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert client.post("/v1/internal/embedding-model/unload").status_code == 401


def test_openapi_publishes_the_route_and_the_request_model(tmp_path, loaders):
    client, _ = client_for(tmp_path, loaders)
    assert "/v1/embeddings" in client.get("/openapi.json").json()["paths"]
    assert EmbeddingRequest.model_validate({"input": "x"}).encoding_format == "float"


def test_the_embedding_model_flag_and_its_start(tmp_path, loaders, caplog):
    overrides, _ = split_values(
        vars(build_parser().parse_args(["--embedding-model", "e.gguf", "--embedding-ctx-size", "512"]))
    )
    assert overrides["embedding_model"] == "e.gguf" and overrides["embedding_ctx_size"] == 512
    settings = Settings(user_data_dir=tmp_path / "user", embedding_model="missing.gguf")
    services = Services.build(settings, tmp_path / "settings.yaml", loaders=loaders)
    try:  # a model that cannot load does not stop the start; the log says why
        assert services.embeddings.current is None
        assert any("missing.gguf" in rec.getMessage() for rec in caplog.records)
    finally:
        services.close()


def test_close_unloads_the_embedding_model(tmp_path, loaders):
    _, services = client_for(tmp_path, loaders)
    fake = services.embeddings._loaded[1]
    assert isinstance(fake, FakeEmbedder)
    services.close()
    assert fake.closed and services.embeddings.current is None
