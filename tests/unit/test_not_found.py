"""A preset or character that is not there is a typed "not found" (HTTP 404 in the API), not a bad request."""

from __future__ import annotations

import fastapi
import pytest
from fastapi.testclient import TestClient

from webui.api import create_api, install_error_handlers
from webui.characters.store import CharacterStore
from webui.errors import CharacterNotFoundError, InvalidNameError, PresetNotFoundError, SettingsError
from webui.presets import PresetStore
from webui.services import Services
from webui.settings import Settings
from webui.templates.chat_template import InstructionTemplateStore


def test_stores_raise_their_own_not_found_errors(tmp_path):
    presets, characters = PresetStore(tmp_path / "presets"), CharacterStore(tmp_path / "characters")
    for call in (lambda: presets.load("Nope"), lambda: presets.delete("Nope")):
        with pytest.raises(PresetNotFoundError, match="no preset called 'Nope'") as info:
            call()
        assert (info.value.status_code, info.value.code) == (404, "preset_not_found")
    for call in (lambda: characters.load("Nobody"), lambda: characters.delete("Nobody")):
        with pytest.raises(CharacterNotFoundError, match="no character called 'Nobody'") as info:
            call()
        assert (info.value.status_code, info.value.code) == (404, "character_not_found")
    # a name that cannot be a file is refused as a name, not looked up
    with pytest.raises(InvalidNameError):
        presets.load("../x")
    with pytest.raises(InvalidNameError):
        characters.load("../x")
    # a missing instruction template is a settings problem (it is chosen in the UI, never sent to the API)
    with pytest.raises(SettingsError, match="no instruction template called 'Nope'"):
        InstructionTemplateStore(tmp_path / "templates").load("Nope")


def test_the_three_yaml_folders_share_one_listing(tmp_path):
    presets, characters = PresetStore(tmp_path / "p"), CharacterStore(tmp_path / "c")
    templates = InstructionTemplateStore(tmp_path / "t")
    for folder in (presets.folder, characters.folder, templates.folder):
        folder.mkdir()
        for name in ("b.yaml", "A.yaml", ".hidden.yaml", ".b.yaml.x.tmp", "notes.txt"):
            (folder / name).write_text("{}\n")
    assert presets.names() == templates.names() == ["A", "b"]
    assert characters.names() == ["A", "Assistant", "b"]


@pytest.fixture
def client(tmp_path, loaders):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").write_bytes(b"GGUF ok")
    services = Services.build(Settings(user_data_dir=tmp_path, api=True), tmp_path / "settings.yaml", loaders=loaders)
    services.load_model("m.gguf", "fake")
    app = fastapi.FastAPI()  # the /v1 routes as webui.app mounts them, without building the whole UI
    install_error_handlers(app)
    app.include_router(create_api(services), prefix="/v1")
    return TestClient(app)


def test_api_answers_404_for_a_missing_preset_or_character(client):
    body = {"model": "m.gguf", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    r = client.post("/v1/chat/completions", json={**body, "preset": "No such preset"})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "preset_not_found" and "No such preset" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", json={**body, "character": "Nobody"})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "character_not_found"
    r = client.post("/v1/completions", json={"model": "m.gguf", "prompt": "Hi", "preset": "Nope", "stream": True})
    assert r.status_code == 404 and r.json()["error"]["code"] == "preset_not_found"
    # the presets that are there still work
    assert client.post("/v1/chat/completions", json={**body, "preset": "Deterministic"}).status_code == 200
