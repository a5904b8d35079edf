"""Every user-supplied name that becomes a path, at every entry point, with hostile names.

Each entry point must refuse the name with a typed error (or, for an import, pick a safe
name of its own), and nothing may be read or written outside the user-data folder: a
secret file next to it is never returned, and the tree outside is byte-for-byte the same.
"""

from __future__ import annotations

import hashlib

import pytest

from hubstub import HubStub
from webui.errors import DownloadError, InvalidNameError
from webui.params import SamplingParams
from webui.services import Services
from webui.settings import Settings

HOSTILE = [
    "../secret",
    "../../etc/passwd",
    "..",
    ".",
    "/etc/passwd",
    "/tmp/x",
    "a/../../secret",
    "..\\secret",
    "C:\\Windows\\win.ini",
    "ok\x00.yaml",
    "x" * 300,
    "CON",
    "nul.txt",
    "com1",
    "LPT9.yaml",
    "\uff0e\uff0e\uff0fsecret",  # full-width "../"
    "\u2024\u2024/secret",  # one-dot leaders
    "..\u2215secret",
    "na\nme",
    " ",
    "",
    ".hidden",
    "trailing.",
    "a:b",
    "q?",
    "star*",
]
IDS = [repr(n)[:24] for n in HOSTILE]


@pytest.fixture
def world(tmp_path):
    """A user-data folder with a secret file beside it, and a fingerprint of everything outside it."""
    root = tmp_path / "root"
    user = root / "user"
    (user / "models").mkdir(parents=True)
    (root / "secret.yaml").write_text("temperature: 0.123\ninstruction_template: SECRET\nname: SECRET\n")
    (root / "secret.json").write_text('{"messages": [{"role": "user", "content": "SECRET"}]}')
    (tmp_path / "import-me.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    services = Services.build(Settings(user_data_dir=user), user / "settings.yaml")

    def outside() -> dict[str, str]:
        return {
            str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in tmp_path.rglob("*")
            if p.is_file() and user not in p.parents
        }

    before = outside()
    yield services
    assert outside() == before, "something was written outside the user-data folder"


def refused(call) -> None:
    """``call`` refuses its name as a name (not by failing later, e.g. on a file that is not there)."""
    try:
        result = call()
    except InvalidNameError:
        return
    pytest.fail(f"accepted a hostile name and returned {result!r}")


@pytest.mark.parametrize("name", HOSTILE, ids=IDS)
def test_stores_refuse_hostile_names(world, name):
    s = world
    refused(lambda: s.presets.save(name, SamplingParams()))
    refused(lambda: s.presets.load(name))
    refused(lambda: s.presets.delete(name))
    from webui.characters.character import Character

    refused(lambda: s.characters.save(name, Character(name="x")))
    refused(lambda: s.characters.load(name))
    refused(lambda: s.characters.delete(name))
    chat = s.chats.new("Assistant")
    chat.id = name
    refused(lambda: s.chats.save(chat))
    refused(lambda: s.chats.load("Assistant", name))
    refused(lambda: s.chats.load(name, "x"))
    refused(lambda: s.chats.list(name))
    refused(lambda: s.chats.delete("Assistant", name))
    refused(lambda: s.chats.import_file(name, b'{"messages": []}'))
    refused(lambda: s.instruction_templates.load(name))
    refused(lambda: s.read_grammar(name))


@pytest.mark.parametrize("name", HOSTILE, ids=IDS)
def test_model_names_refused(world, name, tmp_path):
    m = world.models
    refused(lambda: m.path_of(name))
    refused(lambda: m.facts(name))
    refused(lambda: m.load(name))
    refused(lambda: m.delete_model(name))
    from webui.models.model_settings import ModelSettings

    refused(lambda: m.save_model_settings(name, ModelSettings()))
    if name.strip():  # an empty name keeps the file's own name (by design)
        refused(lambda: m.import_model(tmp_path / "import-me.gguf", "copy", name=name))


def test_uploaded_card_with_hostile_name_lands_inside(world):
    """An upload's own name and the character name inside it are both untrusted."""
    import json

    upload = world.characters.folder.parent / "incoming" / "upload.json"
    upload.parent.mkdir()
    for hostile in ("../../evil", "/etc/evil", "CON", "..", "x" * 400):
        upload.write_text(
            json.dumps(
                {
                    "spec": "chara_card_v2",
                    "spec_version": "2.0",
                    "data": {"name": hostile, "description": "d", "first_mes": "hi"},
                }
            )
        )
        result = world.characters.import_file(upload, original_name=f"{hostile}.json")
        path = world.characters.path(result.file_name)
        assert path.parent == world.characters.folder and path.is_file()


def test_download_targets_from_a_hostile_hub_stay_inside(world, smollm_path, monkeypatch):
    from webui.downloads.hub import download, folder_name, list_files, parse_source

    hub = HubStub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        hub.add_repo(
            "evil/traversal",
            {"config.json": b"{}", "../../../escaped.safetensors": b"x" * 10, "model.safetensors": b"y" * 10},
        )
        with pytest.raises(DownloadError, match="Refusing the file '../../../escaped.safetensors'"):
            listing = list_files(parse_source("evil/traversal"))
            download(listing, listing.choices[0], world.models.model_dir)
        for text in ("../evil", "evil/../../x", "a/b/c/d", "..\\x/y"):
            with pytest.raises(DownloadError, match="is not a repository name"):
                parse_source(text)
        # a leading slash is only a repository name's decoration: the target is one folder inside models/
        assert folder_name(parse_source("/etc/passwd")) == "etc_passwd"
    finally:
        hub.stop()
    assert not list(world.models.model_dir.parent.parent.glob("escaped*"))


def test_api_names_refused_with_400_not_500(world):
    """The /v1 body fields that name files (the model to load, a character): refused as names, 400."""
    from fastapi.testclient import TestClient

    from webui.app import create_app

    world.settings.api = True
    client = TestClient(create_app(world))
    for name in ("../secret", "/etc/passwd", "..\\secret", "\uff0e\uff0e\uff0fsecret"):
        r = client.post("/v1/internal/model/load", json={"model_name": name})
        assert (r.status_code, r.json()["error"]["code"]) == (400, InvalidNameError.code), r.text
        assert "SECRET" not in r.text
        r = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "mode": "chat", "character": name},
        )
        assert (r.status_code, r.json()["error"]["code"]) == (400, InvalidNameError.code), r.text
