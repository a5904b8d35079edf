"""Roles with log-in: only the admin changes the server's models and settings, in the services and in the page.

The services are the app's own (``Services.build`` on a user-data folder with a users file: alice is the
admin, bob a user) over the scripted ``fake`` loader. Each admin action is refused to bob's view
(``services.space(bob)``) with :class:`PermissionDeniedError` and done for alice's; the page's own
handlers (found in the built UI by name and run as one user's event, as Gradio runs them) hide the
admin's controls from bob and answer his admin actions with the error as a pop-up. Without log-in
nothing changes. The two-user browser tests are in tests/browser.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest
from gradio.context import LocalContext

from embedding_models import fake_models
from webui.accounts.passwords import hash_password
from webui.accounts.users import User
from webui.errors import PermissionDeniedError
from webui.params import SamplingParams
from webui.services import Services
from webui.settings import Settings
from webui.storage import read_yaml
from webui.ui import build_ui
from webui.ui.common import error_text
from webui.ui.model_tab import OPTION_NAMES, role_updates
from webui.ui.parameters_tab import is_shared, values_of
from webui.ui.tools_panel import shown_folder

USERS = """
users:
  alice: {{password: "{alice}", role: admin}}
  bob: {{password: "{bob}"}}
"""
MODELS = ("a.gguf", "b.gguf", "c.gguf")


def make_services(tmp_path: Path, loaders: Any, *, users: bool = True, user_models: str | None = None) -> Services:
    user_dir = tmp_path / "user"
    (user_dir / "models").mkdir(parents=True)
    for name in MODELS:
        (user_dir / "models" / name).write_bytes(b"GGUF weights")
    if users:
        hashed = {name: hash_password(f"{name}-secret") for name in ("alice", "bob")}
        (user_dir / "users.yaml").write_text(USERS.format(**hashed), encoding="utf-8")
    settings = Settings(user_data_dir=user_dir, user_models=user_models)
    services = Services.build(settings, user_dir / "settings.yaml", loaders=loaders)
    # a scripted embedder over embed.gguf (before any user's view is made: views share it)
    (tmp_path / "embed").mkdir()
    services.embeddings, _ = fake_models(tmp_path / "embed")
    return services


@pytest.fixture
def services(tmp_path, loaders) -> Iterator[Services]:
    services = make_services(tmp_path, loaders, user_models="b.gguf")
    yield services
    services.close()


def person(services: Services, name: str) -> User:
    assert services.accounts is not None
    user = services.accounts.find(name)
    assert user is not None
    return user


def audit_actions(services: Services) -> list[tuple[str, str]]:
    assert services.audit is not None
    return [(entry["actor"], entry["action"]) for entry in services.audit.read(1000)]


# ---- the services: each admin wrapper refuses a user and lets the admin through ----------------------------


def test_every_admin_wrapper_refuses_a_user_and_lets_the_admin_through(services, tmp_path):
    alice, bob = (services.space(person(services, n)) for n in ("alice", "bob"))
    assert alice.is_admin and not bob.is_admin
    services.load_model("a.gguf", "fake")  # the server's own start (--model)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "config.json").write_text("{}")

    refused: list[tuple[str, Callable[[Services], Any]]] = [
        ("unload the model", lambda s: s.unload_model()),
        ("delete the model c.gguf", lambda s: s.delete_model("c.gguf")),
        ("import the model incoming", lambda s: s.import_model(incoming, "link")),
        ("load the embedding model embed.gguf", lambda s: s.load_embedding_model("embed.gguf")),
        ("unload the embedding model", lambda s: s.unload_embedding_model()),
        ("load the model c.gguf", lambda s: s.load_model("c.gguf", "fake")),
        ("download models", lambda s: s.require_admin("download models")),
        ("change the server's settings", lambda s: s.remember(model="c.gguf")),
    ]
    for action, call in refused:
        with pytest.raises(PermissionDeniedError) as caught:
            call(bob)
        assert caught.value.status_code == 403 and caught.value.key == "error.admin_only", action
        assert caught.value.message.startswith(f"Only the server's admin can {action}."), caught.value.message
    # nothing happened: the model is loaded, every file is there, no embedding model, the settings untouched
    assert services.models.current is not None and services.models.current.name == "a.gguf"
    assert services.models.list_models() == list(MODELS) and services.embeddings.current is None
    assert not services.settings_path.exists() or read_yaml(services.settings_path).get("model") != "c.gguf"

    assert alice.load_embedding_model("embed.gguf").name == "embed.gguf"
    alice.unload_embedding_model()
    assert services.embeddings.current is None
    assert alice.import_model(incoming, "link") == "incoming"
    assert alice.delete_model("c.gguf") and "c.gguf" not in services.models.list_models()
    alice.unload_model()
    assert services.models.current is None
    alice.load_model("a.gguf", "fake")  # any model, not only --user-models
    assert services.models.current is not None and services.models.current.name == "a.gguf"

    actions = audit_actions(services)
    assert ("bob", "refused") in actions
    assert {("alice", "unload the model"), ("alice", "delete the model c.gguf"), ("alice", "load the model")} <= set(
        actions
    )


def test_a_user_picks_among_the_loaded_model_and_the_allowed_ones(services):
    alice, bob = (services.space(person(services, n)) for n in ("alice", "bob"))
    assert alice.models_for_user() == list(MODELS)
    assert bob.models_for_user() == ["b.gguf"]  # --user-models b.gguf; nothing loaded yet
    services.load_model("a.gguf", "fake")
    assert bob.models_for_user() == ["a.gguf", "b.gguf"]
    assert bob.may_load("b.gguf") and not bob.may_load("a.gguf") and not bob.may_load("c.gguf")
    bob.load_model("b.gguf", "fake")  # allowed: loads, and says who did
    assert services.models.current is not None and services.models.current.name == "b.gguf"
    assert ("bob", "load the model") in audit_actions(services)


# ---- the page: each handler runs as one user's event ------------------------------------------------------


@contextlib.contextmanager
def event_of(name: str | None, lang: str = "en") -> Iterator[None]:
    """Run what follows as Gradio runs a handler for ``name``'s page (its request in the context variable)."""
    token = LocalContext.request.set(SimpleNamespace(username=name, headers={"accept-language": lang}))
    try:
        yield
    finally:
        LocalContext.request.reset(token)


class Page:
    """The built UI's handlers, found by the name of the function the tab wired."""

    def __init__(self, services: Services) -> None:
        self.demo = build_ui(services)

    def handler(self, qualname_end: str) -> Any:
        found = [f for f in self.demo.fns.values() if getattr(f.fn, "__qualname__", "").endswith(qualname_end)]
        assert found, qualname_end
        return found[0]

    def call(self, qualname_end: str, *args: Any) -> Any:
        return self.handler(qualname_end).fn(*args)

    def shown(self, qualname_end: str, *args: Any) -> dict[str, Any]:
        """What the handler sends, by the elem_id of the component it goes to."""
        block = self.handler(qualname_end)
        values = block.fn(*args)
        return {c.elem_id: v for c, v in zip(block.outputs, values, strict=True) if c.elem_id}

    def refused(self, qualname_end: str, *args: Any) -> str:
        """The pop-up's text when the handler refuses (the handlers turn our errors into ``gr.Error``)."""
        with pytest.raises(gr.Error) as caught:
            result = self.call(qualname_end, *args)
            if hasattr(result, "__next__"):  # a streaming handler refuses on its first step
                next(result)
        return str(caught.value.message)


@pytest.fixture
def page(services) -> Page:
    return Page(services)


ADMIN_ONLY = ("model-unload", "model-save-settings", "model-delete", "download-panel", "import-panel")


def test_the_model_tab_shows_the_admins_controls_to_admins_only(services, page):
    services.load_model("a.gguf", "fake")
    with event_of("bob"):
        bob = page.shown("build_model_tab.<locals>.page_state")
    with event_of("alice"):
        alice = page.shown("build_model_tab.<locals>.page_state")
    for elem_id in ADMIN_ONLY:
        assert bob[elem_id]["visible"] is False and alice[elem_id]["visible"] is True, elem_id
    assert bob["model-role-note"]["visible"] is True and alice["model-role-note"]["visible"] is False
    # --user-models lists b.gguf: bob gets a Load button, and the list holds the loaded model and b.gguf only
    assert bob["model-load"]["visible"] is True
    assert bob["model-dropdown"]["choices"] == ["a.gguf", "b.gguf"]
    assert bob["model-dropdown"]["value"] == "a.gguf"
    with event_of("bob"):
        refreshed = page.call("build_model_tab.<locals>.on_refresh", "a.gguf")
    assert refreshed["choices"] == ["a.gguf", "b.gguf"]


def test_without_user_models_a_user_has_no_load_button(tmp_path, loaders):
    services = make_services(tmp_path, loaders)
    try:
        bob = services.space(person(services, "bob"))
        load, note, *admin_only = role_updates(bob, 3)
        assert load["visible"] is False and note["visible"] is True
        assert all(u["visible"] is False for u in admin_only)
    finally:
        services.close()


def test_the_model_tabs_admin_actions_are_refused_to_a_user_in_his_language(services, page):
    services.load_model("a.gguf", "fake")
    with event_of("bob"):
        assert page.refused("build_model_tab.<locals>.on_unload").startswith("Only the server's admin can unload")
        assert "delete the model c.gguf" in page.refused("build_model_tab.<locals>.do_delete", "c.gguf")
        saved = page.refused(
            "build_model_tab.<locals>.on_save_settings", "a.gguf", "fake", None, None, None, *[None] * len(OPTION_NAMES)
        )
        assert "save a model's settings" in saved
    with event_of("bob", "ru"):
        text = page.refused("build_model_tab.<locals>.on_unload")
        assert "администратор" in text and "unload the model" in text
    with event_of("bob", "zh"):
        assert "管理员" in page.refused("build_model_tab.<locals>.on_unload")
    assert services.models.current is not None and "c.gguf" in services.models.list_models()
    with event_of("alice"):
        assert "No model" in page.call("build_model_tab.<locals>.on_unload")
    assert services.models.current is None


def test_downloads_imports_and_the_embedding_model_are_the_admins(services, page, tmp_path, monkeypatch):
    from webui.downloads.hub import Choice, Listing, RemoteFile, Source

    file = RemoteFile("model-Q4_K_M.gguf", 100)
    choice = Choice("q4", "Q4_K_M", (file,), "model-Q4_K_M.gguf", is_folder=False)
    listing = Listing(Source("someone/model-GGUF"), [file], "gguf", [choice])
    started: list[Any] = []
    monkeypatch.setattr(services.downloads, "start", lambda *args: started.append(args))
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "config.json").write_text("{}")
    with event_of("bob"):
        text = page.refused("build_download_panel.<locals>.on_start", listing, choice.key, "", False)
        assert "download models" in text
        # through the Gradio API the listing (a gr.State) is not sent: refused all the same, not "list first"
        assert "download models" in page.refused("build_download_panel.<locals>.on_start", None, None, "", False)
        assert "import the model" in page.refused("build_download_panel.<locals>.on_import", str(incoming), "link")
        shown = page.shown("build_embeddings_panel.<locals>.page_load")
        assert shown["embeddings-load"]["visible"] is False and shown["embeddings-unload"]["visible"] is False
        assert "embedding model" in page.refused("build_embeddings_panel.<locals>.on_load", "embed.gguf")
        assert "embedding model" in page.refused("build_embeddings_panel.<locals>.on_unload")
    assert started == [] and "incoming" not in services.models.list_models()
    assert services.embeddings.current is None
    with event_of("alice"):
        shown = page.shown("build_embeddings_panel.<locals>.page_load")
        assert shown["embeddings-load"]["visible"] is True
        assert "embed.gguf" in page.call("build_embeddings_panel.<locals>.on_load", "embed.gguf")
    assert services.embeddings.current is not None


def test_a_user_sees_his_own_files_folder_read_only_and_no_mcp_json(services, page, tmp_path):
    mcp_json = Path(services.settings.user_data_dir) / "mcp.json"
    mcp_json.write_text(json.dumps({"mcpServers": {"secret": {"url": "http://x", "headers": {"k": "sk-1"}}}}))
    shared = tmp_path / "shared-docs"
    shared.mkdir()
    with event_of("alice"):
        assert page.call("ToolsPanel.wire.<locals>.on_folder", str(shared)) == str(shared.resolve())
    assert services.tool_context.allowed_folder == shared.resolve()  # the server's, for every admin
    with event_of("bob"):
        bob = services.space(person(services, "bob"))
        own = shown_folder(bob)
        assert own == str(Path(services.settings.user_data_dir) / "users" / bob.user.folder / "files")
        values = page.shown("build_chat_tab.<locals>.on_page_load")
        assert values["chat-tools-folder"] == {"__type__": "update", "value": own, "interactive": False}
        assert values["chat-mcp-editor"]["visible"] is False and "sk-1" not in str(values["chat-mcp-editor"])
        assert values["chat-mcp-save"]["visible"] is False
        assert page.call("ToolsPanel.wire.<locals>.on_folder", own) == own  # leaving the box: nothing happens
        assert "change the folder" in page.refused("ToolsPanel.wire.<locals>.on_folder", str(tmp_path))
        assert "mcp.json" in page.refused("ToolsPanel.wire.<locals>.on_mcp_save", "{}", None, "Assistant")
    assert services.tool_context.allowed_folder == shared.resolve() and "sk-1" in mcp_json.read_text()


def test_a_user_saves_his_own_copy_of_a_shared_preset_and_cannot_delete_the_shared_one(services, page):
    shared_file = Path(services.settings.user_data_dir) / "presets" / "Creative.yaml"
    before = shared_file.read_text()
    values = values_of(SamplingParams())  # the Parameters tab's boxes at their defaults
    with event_of("bob"):
        bob = services.space(person(services, "bob"))
        assert is_shared(bob.presets, "Creative") and not is_shared(services.presets, "Creative")
        message = page.refused("build_parameters_tab.<locals>.do_delete", "Creative")
        assert "shared library" in message and "Creative" in message
        _, saved = page.call("build_parameters_tab.<locals>.save_preset", "Creative", "Creative", {}, *values)
        assert "your own copy" in saved
        assert (bob.own_dir / "presets" / "Creative.yaml").is_file()
        _, again = page.call("build_parameters_tab.<locals>.save_preset", "Mine", None, {}, *values)
        assert "your own copy" not in again
        # his own presets are his page's: listed and loaded
        assert "Mine" in page.shown("build_parameters_tab.<locals>.current_state")["preset-dropdown"]["choices"]
        assert "Mine" in page.call("build_parameters_tab.<locals>.load_preset", "Mine")[-3]
        page.call("build_parameters_tab.<locals>.do_delete", "Mine")  # his own: deleted
        assert "Mine" not in bob.presets.names()
    with event_of("bob", "ru"):
        assert "общей библиотеке" in page.refused("build_parameters_tab.<locals>.do_delete", "Chat")
    assert shared_file.read_text() == before


def test_a_user_cannot_delete_a_shared_character(services, page):
    shared_file = Path(services.settings.user_data_dir) / "characters" / "Tutor.yaml"
    with event_of("bob"):
        message = page.refused("CharacterPanel.wire.<locals>.on_delete_character", "Tutor")
        assert "shared library" in message
    assert shared_file.is_file()
    with event_of("alice"):
        page.call("CharacterPanel.wire.<locals>.on_delete_character", "Tutor")  # the admin edits the library
    assert not shared_file.is_file()


def test_the_admins_page_edits_of_the_shared_libraries_are_in_the_audit_log(services, page):
    values = values_of(SamplingParams(temperature=0.4))
    with event_of("alice"):
        page.call("build_parameters_tab.<locals>.save_preset", "Lab", None, {}, *values)
        page.call("build_parameters_tab.<locals>.do_delete", "Lab")
        page.call("CharacterPanel.wire.<locals>.on_save_character", "Guide", "Guide", "Hello", "", "", None)
        page.call("CharacterPanel.wire.<locals>.on_delete_character", "Guide")
    with event_of("bob"):  # his own copies: not the shared library, not logged
        page.call("build_parameters_tab.<locals>.save_preset", "Mine", None, {}, *values)
        page.call("CharacterPanel.wire.<locals>.on_save_character", "Pal", "Pal", "Hi", "", "", None)
    assert services.audit is not None
    logged = [e for e in services.audit.read(1000) if "shared" in e["action"]]
    assert [(e["actor"], e["action"], e["kind"], e["name"]) for e in logged] == [
        ("alice", "save the shared preset", "preset", "Lab"),
        ("alice", "delete the shared preset", "preset", "Lab"),
        ("alice", "save the shared character", "character", "Guide"),
        ("alice", "delete the shared character", "character", "Guide"),
    ]
    text = (Path(services.settings.user_data_dir) / "logs" / "audit.jsonl").read_text(encoding="utf-8")
    assert "alice-secret" not in text and "bob-secret" not in text and "$argon2" not in text


def test_a_download_started_on_the_admins_page_names_the_repository_and_files(services, page, monkeypatch):
    from hubstub import HubStub

    hub = HubStub().start()
    try:
        hub.add_repo("test/tiny-GGUF", {"tiny-Q8_0.gguf": b"GGUF" + b"\0" * 2000, "README.md": b"# tiny\n"})
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        with event_of("alice"):
            listing, *_ = page.call("build_download_panel.<locals>.on_list", "test/tiny-GGUF", "hf_Tok_9", False)
            steps = list(
                page.call("build_download_panel.<locals>.on_start", listing, "tiny-Q8_0.gguf", "hf_Tok_9", False)
            )
        assert 'data-state="done"' in steps[-1][1]
    finally:
        hub.stop()
    assert services.audit is not None
    downloads = [e for e in services.audit.read(1000) if "download" in e["action"]]
    assert [(e["actor"], e["action"], e.get("repo"), e.get("files")) for e in downloads] == [
        ("alice", "download a model", "test/tiny-GGUF", ["tiny-Q8_0.gguf"])
    ]
    assert "hf_Tok_9" not in (Path(services.settings.user_data_dir) / "logs" / "audit.jsonl").read_text()


def test_without_log_in_nothing_changes(tmp_path, loaders):
    services = make_services(tmp_path, loaders, users=False)
    try:
        assert services.accounts is None and services.is_admin
        page = Page(services)
        with event_of(None):
            shown = page.shown("build_model_tab.<locals>.page_state")
            for elem_id in (*ADMIN_ONLY, "model-load"):
                assert shown[elem_id]["visible"] is True, elem_id
            assert shown["model-role-note"]["visible"] is False
            assert shown["model-dropdown"]["choices"] == list(MODELS)
            services.load_model("a.gguf", "fake")
            page.call("build_model_tab.<locals>.on_unload")
        assert services.models.current is None
    finally:
        services.close()


def test_permission_errors_read_in_every_language():
    exc = PermissionDeniedError("Only the server's admin can x.", key="error.admin_only", action="x")
    assert error_text(exc, "en") == "Only the server's admin can x."
    assert "администратор" in error_text(exc, "ru") and "(x)" in error_text(exc, "ru")
    assert "管理员" in error_text(exc, "zh") and "x" in error_text(exc, "zh")
    shared = PermissionDeniedError("'p' is in the shared library", key="error.shared_item", name="p")
    assert "«p»" in error_text(shared, "ru") and "“p”" in error_text(shared, "zh")
