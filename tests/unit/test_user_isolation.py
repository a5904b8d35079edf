"""Per-user data an audit found implemented but untested: attachments, the remembered chat set-up (persona
and system prompt), and users' own copies of shared characters and instruction templates.

The services are the app's own (``Services.build`` on a user-data folder with a users file: alice is the
main admin, whose data stays in the user-data folder itself; bob and carol are users, each under
``users/<name>/``) over the scripted ``fake`` loader. Everything is read and written on real files, through
each user's view (``services.space(user)``) and, where the Chat tab has a path for it, through its
:class:`ChatPage` on that view; a restart is a new ``Services.build`` on the same folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from webui.accounts.passwords import hash_password
from webui.characters.character import Character
from webui.chat.history import Chat
from webui.chat.prompt import ChatOptions
from webui.errors import ChatNotFoundError, PermissionDeniedError, SettingsError, WebUIError
from webui.params import SamplingParams
from webui.services import Services
from webui.settings import Settings
from webui.ui.chat_page import ChatPage

NAMES = ("alice", "bob", "carol")
DOCUMENT = "Bob's lab notes: the sample melts at 412 kelvin."
SHARED_TUTOR = {"name": "Tutor", "greeting": "Hello from the shared Tutor.", "system_prompt": "Shared rules."}
BOBS_TUTOR = Character(name="Tutor", greeting="Hi, this is bob's own Tutor.", system_prompt="Bob's own rules.")
BOBS_CHATML = "{%- for m in messages -%}BOB[{{ m['role'] }}] {{ m['content'] }}\n{%- endfor -%}"
DEFAULT_SETUP = Chat(id="", character="").setup()


def start(user_dir: Path, models: Path, loaders: Any) -> Services:
    """The app started on ``user_dir`` as server.py starts it: settings.yaml read, then the services built."""
    path = user_dir / "settings.yaml"
    overrides = {"user_data_dir": str(user_dir), "model_dir": str(models), "load": {"n_ctx": 512}}
    return Services.build(Settings.from_file(path, overrides), path, loaders=loaders)


@pytest.fixture
def dirs(tmp_path) -> tuple[Path, Path]:
    user_dir, models = tmp_path / "user", tmp_path / "models"
    user_dir.mkdir()
    models.mkdir()
    (models / "a.gguf").write_bytes(b"GGUF ok")
    entries = {
        name: {"password": hash_password("pw-" + name), "role": "admin" if name == "alice" else "user"}
        for name in NAMES
    }
    (user_dir / "users.yaml").write_text(yaml.safe_dump({"users": entries}), encoding="utf-8")
    return user_dir, models


@pytest.fixture
def services(dirs, loaders) -> Iterator[Services]:
    services = start(*dirs, loaders)
    yield services
    services.close()


def views(services: Services) -> tuple[Services, Services, Services]:
    assert services.accounts is not None
    alice, bob, carol = (services.space(services.accounts.find(name)) for name in NAMES)
    assert alice.is_admin and not bob.is_admin and not carol.is_admin
    return alice, bob, carol


def attach_and_send(view: Services, text: str, file_name: str, content: str) -> Chat:
    """Send a message with a document attached in ``view``'s own chat, as the Chat tab's send does."""
    chat = view.chats.new("Assistant")
    upload = view.chat_service.read_upload(file_name, content.encode("utf-8"))
    turn = view.chat_service.turn(
        chat,
        "send",
        text=text,
        character=Character(),
        options=ChatOptions(),
        params=SamplingParams(max_tokens=2),
        uploads=[upload],
    )
    list(turn)
    return chat


def files_under(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


# ---- 1. attachments --------------------------------------------------------------------------------------


def test_a_document_attached_to_bobs_chat_is_stored_in_his_folder_and_reachable_by_nobody_else(services, dirs):
    user_dir, _ = dirs
    alice, bob, carol = views(services)
    alice.load_model("a.gguf", "fake")

    chat = attach_and_send(bob, "What melts?", "lab-notes.txt", DOCUMENT)
    [attachment] = chat.messages[0].attachments
    bob_chats = user_dir / "users" / "bob" / "logs" / "chats" / "Assistant"
    stored = bob_chats / f"{chat.id}.files" / attachment.file
    assert stored.read_bytes() == DOCUMENT.encode("utf-8")
    assert Path(bob.chat_service.attachment_path(chat, attachment)) == stored
    # the chat reads back in bob's view with its document
    reloaded = bob.chats.load("Assistant", chat.id)
    assert DOCUMENT in bob.chats.files("Assistant", chat.id).materials(reloaded.messages[0].attachments).text
    # nothing of it is in the main admin's folder (the user-data folder's own chats) or carol's
    for folder in (user_dir / "logs" / "chats", user_dir / "users" / "carol"):
        assert not any(chat.id in name or attachment.file in name for name in files_under(folder)), folder

    for other in (alice, carol):
        assert other.chats.list("Assistant") == []
        with pytest.raises(ChatNotFoundError):
            other.chats.load("Assistant", chat.id)
        # bob's chat id and record in another view lead to that view's own folder, where there is nothing
        assert not Path(other.chat_service.attachment_path(chat, attachment)).exists()
        leaked = other.chats.files("Assistant", chat.id).materials([attachment]).text
        assert DOCUMENT not in leaked and "missing" in leaked
        # the Chat tab opening bob's chat id (a page's state) in another's view gets a new, empty chat
        page = ChatPage(other)
        opened = page.open_chat(("Assistant", chat.id), "Assistant")
        assert opened.messages == [] and page.files.path(chat, attachment) is None
        with pytest.raises(ChatNotFoundError):
            other.chats.delete("Assistant", chat.id)
    assert stored.is_file()  # nobody else's delete reached it


def test_alices_attachments_are_hers_alone_too(services, dirs):
    user_dir, _ = dirs
    alice, bob, carol = views(services)
    alice.load_model("a.gguf", "fake")
    secret = "Alice's exam answers: 42."

    chat = attach_and_send(alice, "Check this", "answers.md", secret)
    [attachment] = chat.messages[0].attachments
    # the main admin keeps the user-data folder's own chats folder (as before log-in)
    stored = user_dir / "logs" / "chats" / "Assistant" / f"{chat.id}.files" / attachment.file
    assert stored.read_text(encoding="utf-8") == secret
    assert not any(chat.id in name for name in files_under(user_dir / "users"))

    for other in (bob, carol):
        assert other.chats.list("Assistant") == []
        with pytest.raises(ChatNotFoundError):
            other.chats.load("Assistant", chat.id)
        assert secret not in other.chats.files("Assistant", chat.id).materials([attachment]).text
        assert ChatPage(other).files.path(chat, attachment) is None
    assert [c.id for c in alice.chats.list("Assistant")] == [chat.id]


# ---- 2. the chat set-up (persona, system prompt) remembered for new chats ---------------------------------


def test_the_setup_bob_remembers_for_new_chats_is_his_alone_and_survives_a_restart(services, dirs, loaders):
    user_dir, _ = dirs
    alice, bob, carol = views(services)
    bobs = {
        "mode": "chat",
        "system_prompt": "Bob's private rules: answer in Latin.",
        "persona_name": "Bobby",
        "persona_bio": "Bob studies law.",
        "instruction_template": "Alpaca",
        "thinking": False,
    }
    # the Chat tab's path: the set-up inputs changed on bob's page with no chat open yet
    ChatPage(bob).keep_setup(None, "Assistant", *(bobs[k] for k in bobs))
    assert services.space(services.accounts.find("bob")).settings.chat_setup == bobs
    saved = yaml.safe_load((user_dir / "users" / "bob" / "settings.yaml").read_text(encoding="utf-8"))
    assert saved["chat_setup"] == bobs
    server_file = user_dir / "settings.yaml"
    assert not server_file.exists() or "Bobby" not in server_file.read_text(encoding="utf-8")

    # alice keeps a set-up of her own, which bob and carol do not get either
    alices = {**DEFAULT_SETUP, "system_prompt": "Alice's rules.", "persona_name": "Al", "instruction_template": ""}
    ChatPage(alice).keep_setup(None, "Assistant", *(alices[k] for k in DEFAULT_SETUP))

    def new_chat_setups(running: Services) -> dict[str, dict[str, Any]]:
        return {
            name: ChatPage(view).fresh_chat("Assistant").setup()
            for name, view in zip(NAMES, views(running), strict=True)
        }

    for running in (services, start(*dirs, loaders)):  # now, and after a restart on the same folder
        setups = new_chat_setups(running)
        assert setups["bob"] == bobs
        assert setups["alice"]["system_prompt"] == "Alice's rules." and setups["alice"]["persona_name"] == "Al"
        assert setups["carol"] == DEFAULT_SETUP
        for name, setup in setups.items():
            if name != "bob":
                assert "Bob" not in str(setup) and setup["persona_name"] != "Bobby"
        assert "Alice" not in str(setups["bob"]) and "Alice" not in str(setups["carol"])
        if running is not services:
            running.close()


# ---- 3. a user's own copy of a shared character -----------------------------------------------------------


def test_bobs_own_tutor_wins_for_bob_only_and_the_shared_one_cannot_be_deleted_by_him(services, dirs, loaders):
    user_dir, _ = dirs
    shared_file = user_dir / "characters" / "Tutor.yaml"
    shared_file.write_text(yaml.safe_dump(SHARED_TUTOR), encoding="utf-8")
    before = shared_file.read_text(encoding="utf-8")
    alice, bob, carol = views(services)

    with pytest.raises(PermissionDeniedError) as refused:  # no copy of his own yet: the shared one
        bob.characters.delete("Tutor")
    assert refused.value.status_code == 403 and "shared library" in refused.value.message

    bob.characters.save("Tutor", BOBS_TUTOR)
    own_file = user_dir / "users" / "bob" / "characters" / "Tutor.yaml"
    assert own_file.is_file() and shared_file.read_text(encoding="utf-8") == before
    assert bob.characters.names().count("Tutor") == 1 and not bob.characters.is_shared("Tutor")

    def greetings(running: Services) -> dict[str, tuple[str, str, str]]:
        found = {}
        for name, view in zip(NAMES, views(running), strict=True):
            loaded = view.characters.load("Tutor")
            opened = ChatPage(view).fresh_chat("Tutor")  # the Chat tab's new chat opens with the greeting
            found[name] = (loaded.greeting, loaded.system_prompt, opened.messages[0].content)
        return found

    restarted = start(*dirs, loaders)
    for running in (services, restarted):
        found = greetings(running)
        assert found["bob"] == (BOBS_TUTOR.greeting, BOBS_TUTOR.system_prompt, BOBS_TUTOR.greeting)
        shared = (SHARED_TUTOR["greeting"], SHARED_TUTOR["system_prompt"], SHARED_TUTOR["greeting"])
        assert found["alice"] == shared and found["carol"] == shared
    restarted.close()

    bob.characters.delete("Tutor")  # his own copy: deleted, and the shared one is his again
    assert not own_file.exists() and shared_file.read_text(encoding="utf-8") == before
    assert bob.characters.load("Tutor").greeting == SHARED_TUTOR["greeting"] and bob.characters.is_shared("Tutor")
    with pytest.raises(PermissionDeniedError):
        bob.characters.delete("Tutor")
    assert shared_file.read_text(encoding="utf-8") == before
    assert carol.characters.load("Tutor").greeting == alice.characters.load("Tutor").greeting


def test_a_character_of_bobs_own_is_not_in_anyone_elses_list(services):
    alice, bob, carol = views(services)
    bob.characters.save("Bob's Muse", Character(name="Bob's Muse", greeting="Muse here."))
    assert "Bob's Muse" in bob.characters.names()
    for other in (alice, carol):
        assert "Bob's Muse" not in other.characters.names()
        with pytest.raises(WebUIError):  # CharacterNotFoundError
            other.characters.load("Bob's Muse")
        with pytest.raises(WebUIError):
            other.characters.delete("Bob's Muse")
    assert bob.characters.load("Bob's Muse").greeting == "Muse here."


# ---- 4. instruction templates ----------------------------------------------------------------------------


def test_a_template_in_bobs_own_folder_is_his_alone(services, dirs):
    user_dir, _ = dirs
    alice, bob, carol = views(services)
    own = user_dir / "users" / "bob" / "instruction-templates"
    own.mkdir(parents=True)
    (own / "Bob Format.yaml").write_text(yaml.safe_dump({"instruction_template": BOBS_CHATML}), encoding="utf-8")

    assert "Bob Format" in bob.instruction_templates.names()
    assert "BOB[" in bob.instruction_templates.load("Bob Format").source
    assert "BOB[" in bob.choose_template(None, "Bob Format")[0].source
    for other in (alice, carol):
        assert "Bob Format" not in other.instruction_templates.names()
        with pytest.raises(SettingsError):
            other.instruction_templates.load("Bob Format")
        with pytest.raises(WebUIError):
            other.choose_template(None, "Bob Format")


def test_bobs_own_copy_of_a_shared_template_wins_for_him_only(services, dirs):
    user_dir, _ = dirs
    alice, bob, carol = views(services)
    shared_file = user_dir / "instruction-templates" / "ChatML.yaml"
    before = shared_file.read_text(encoding="utf-8")

    with pytest.raises(PermissionDeniedError):
        bob.instruction_templates.delete("ChatML")
    # a save in bob's view goes to his own folder (Layered: everything but reads and delete is his store's)
    path = bob.instruction_templates.write("ChatML", {"instruction_template": BOBS_CHATML})
    assert path == user_dir / "users" / "bob" / "instruction-templates" / "ChatML.yaml"
    assert shared_file.read_text(encoding="utf-8") == before
    assert bob.instruction_templates.names().count("ChatML") == 1

    assert "BOB[" in bob.instruction_templates.load("ChatML").source
    for other in (alice, carol):
        assert "BOB[" not in other.instruction_templates.load("ChatML").source

    # the template a user's chat turn uses for the loaded model: his copy for him, the shared one for others
    alice.load_model("a.gguf", "fake")
    loaded = services.models.current
    assert loaded is not None
    for view in (alice, bob, carol):
        view.remember(template_overrides={"a.gguf": "ChatML"})
    fresh = [services.space(services.accounts.find(name)) for name in NAMES]
    sources = {name: view.template_for(loaded)[0].source for name, view in zip(NAMES, fresh, strict=True)}
    assert "BOB[" in sources["bob"]
    assert "BOB[" not in sources["alice"] and "BOB[" not in sources["carol"]

    bob.instruction_templates.delete("ChatML")  # his own copy: the shared one is his again
    assert "BOB[" not in bob.instruction_templates.load("ChatML").source
    with pytest.raises(PermissionDeniedError):
        bob.instruction_templates.delete("ChatML")
    assert shared_file.read_text(encoding="utf-8") == before


def test_bobs_own_settings_file_broken_by_hand_is_set_aside_said_and_saved_over(dirs, loaders):
    """It was only logged, and every later choice of bob's failed to save over it. Now it is kept aside (as the
    server's own file is at start), bob's Model tab gets the notice (``own_notices``), and his choices save."""
    user_dir, _ = dirs
    own = user_dir / "users" / "bob"
    own.mkdir(parents=True)
    (own / "settings.yaml").write_text("chat_window: [12\n", encoding="utf-8")
    services = start(*dirs, loaders)
    try:
        _, bob, carol = views(services)
        (notice,) = bob.own_notices
        assert "could not be read" in notice and "your own default settings are used" in notice
        aside = [p.name for p in own.iterdir() if p.name.startswith("settings.yaml.broken-")]
        assert len(aside) == 1 and aside[0] in notice
        assert (own / aside[0]).read_text(encoding="utf-8") == "chat_window: [12\n"  # kept for the admin to fix
        assert carol.own_notices == () and services.own_notices == ()
        bob.remember(chat_window=40)
        assert yaml.safe_load((own / "settings.yaml").read_text(encoding="utf-8"))["chat_window"] == 40
        assert services.space(services.accounts.find("bob")).settings.chat_window == 40
    finally:
        services.close()
