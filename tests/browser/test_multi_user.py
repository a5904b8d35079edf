"""Several people on one server, in real Chromium against the real server.py: Alice (the admin) and
Bob (a user) logged in at once in browser contexts of their own each keep their own chats,
notebook and settings through reloads and a restart; Bob reaches none of Alice's data through the
page, Gradio's API or its file route; Bob's page has no admin controls and the server refuses
their handlers when he calls them directly; a folder made before log-in existed stays the admin's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from reltools import gradio_client

from browserkit import (
    bot_texts,
    choose,
    open_chat,
    open_notebook,
    open_parameters,
    reload,
    set_number,
    wait_for_complete_reply,
)
from harness import make_dirs, start_server, stop_server, wait_until
from hubstub import HubStub
from testdata import GEMMA, SMOLLM
from userkit import ALICE, BOB, audit_entries, close_page, endpoint, lab_users, log_in, log_in_page, request

pytestmark = pytest.mark.browser

REPO = "test/Tiny-GGUF"
HUB_FILE = "Tiny.Q4_0.gguf"


# ---- what one person does and sees ---------------------------------------------------------------


class Person:
    """What one user types in the test, and where the server must keep it."""

    def __init__(self, name: str, *, word: str, preset: str, max_tokens: int, folder: Path) -> None:
        self.name = name
        self.message = f"Tell me one fact about {word}."
        self.system = f"You are {name}'s assistant. Mention {word}."
        self.notebook = f"{name}'s private notes about {word}: ÄÖ 你好"
        self.word = word
        self.preset = preset
        self.max_tokens = max_tokens
        self.folder = folder  # their own data: chats, notebook, settings

    def chat_files(self) -> list[Path]:
        folder = self.folder / "logs" / "chats" / "Assistant"
        return sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))


def dropdown_options(page: Any, elem_id: str) -> list[str]:
    """The labels a dropdown offers (opened with a click, closed again)."""
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id} [role=listbox]").wait_for(state="attached")
    labels = [o.get_attribute("aria-label") or "" for o in page.locator(f"#{elem_id} [role=option]").all()]
    page.keyboard.press("Escape")
    return labels


def type_everything(page: Any, who: Person) -> None:
    """Notebook text, a preset and a parameter value, and a system prompt and message (not sent yet)."""
    open_notebook(page)
    box = page.locator("#notebook-text textarea")
    box.click()
    page.keyboard.type(who.notebook)
    open_parameters(page)
    choose(page, "preset-dropdown", who.preset)
    # the preset's values arrive with its name in the save box: a number typed before then is overwritten
    expect(page.locator("#preset-name textarea")).to_have_value(who.preset)
    set_number(page, "param-max_tokens", str(who.max_tokens))
    open_chat(page)
    system = page.locator("#chat-system textarea")
    system.click()
    page.keyboard.type(who.system)
    system.press("Tab")  # the set-up is kept as it changes
    message = page.locator("#chat-input textarea")
    message.click()
    page.keyboard.type(who.message)


def assert_sees_own(page: Any, who: Person, other: Person) -> None:
    """``page`` (reloaded or new) shows ``who``'s chat, notebook and settings, and nothing of ``other``'s."""
    open_chat(page)
    page.wait_for_function("(m) => document.querySelector('#chat-box').innerText.includes(m)", arg=who.message)
    assert other.word not in page.locator("#chat-box").inner_text()
    options = dropdown_options(page, "chat-list")
    assert len(options) == 1 and options[0].startswith(who.message[:20]), options
    assert page.locator("#chat-system textarea").input_value() == who.system
    open_notebook(page)
    page.wait_for_function("(t) => document.querySelector('#notebook-text textarea').value === t", arg=who.notebook)
    open_parameters(page)
    assert page.locator("#preset-dropdown input").input_value() == who.preset
    assert float(page.locator("#param-max_tokens input[type=number]").input_value()) == who.max_tokens


def assert_files_are_where_they_belong(who: Person, other: Person) -> None:
    files = who.chat_files()
    assert len(files) == 1, files
    chat = json.loads(files[0].read_text(encoding="utf-8"))
    assert chat["messages"][0]["content"] == who.message
    text = files[0].read_text(encoding="utf-8")
    assert who.system in text and other.word not in text
    notebook = who.folder / "logs" / "notebook.txt"
    # (the page sends the text on input; on a loaded machine, with two replies streaming side by side in
    # their slots, that event has been seen to arrive after 10 s)
    wait_until(
        lambda: notebook.is_file() and notebook.read_text(encoding="utf-8") == who.notebook,
        "saving the notebook",
        timeout=60,
    )
    settings = who.folder / "settings.yaml"
    wanted = (f"preset: {who.preset}", f"max_tokens: {who.max_tokens}")

    def saved() -> bool:
        text = settings.read_text(encoding="utf-8") if settings.is_file() else ""
        return all(w in text for w in wanted)

    wait_until(saved, f"saving {wanted} in {settings}", timeout=60)


# ---- 1. each keeps their own -------------------------------------------------------------------


def test_two_people_at_once_keep_their_own_chats_notebook_and_settings(browser, tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    lab_users(user_dir)
    alice = Person("alice", word="apples", preset="Deterministic", max_tokens=9, folder=user_dir)
    bob = Person("bob", word="bananas", preset="Creative", max_tokens=7, folder=user_dir / "users" / "bob")
    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM)
    try:
        pages = {alice.name: log_in_page(browser, srv.url, *ALICE), bob.name: log_in_page(browser, srv.url, *BOB)}
        for who in (alice, bob):
            type_everything(pages[who.name], who)
        # both send at once: the second waits in the queue, each reply lands in its sender's chat
        for who in (alice, bob):
            pages[who.name].locator("#chat-input textarea").press("Enter")
        for who in (alice, bob):
            page = pages[who.name]
            page.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=bot]').length === 1")
            wait_for_complete_reply(page)
            assert bot_texts(page)[-1].strip(), f"{who.name} got an empty reply"

        for who, other in ((alice, bob), (bob, alice)):
            assert_files_are_where_they_belong(who, other)
        # Alice, the first admin, kept the user-data folder's own places; nothing of Bob's is there
        assert not list((user_dir / "users").glob("alice*")), "the main admin's data moved"
        assert sorted(p.name for p in (user_dir / "users").iterdir()) == ["bob"]

        for who, other in ((alice, bob), (bob, alice)):
            reload(pages[who.name])
            assert_sees_own(pages[who.name], who, other)
        for page in pages.values():
            close_page(page)
    finally:
        stop_server(srv)

    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM)
    try:
        for who, other, login in ((alice, bob, ALICE), (bob, alice, BOB)):
            page = log_in_page(browser, srv.url, *login)
            assert_sees_own(page, who, other)
            close_page(page)
    finally:
        stop_server(srv)


# ---- a shared server for the next tests ----------------------------------------------------------


@pytest.fixture(scope="module")
def hub():
    stub = HubStub().start()
    stub.add_repo(REPO, {HUB_FILE: b"GGUF" + bytes(2000), "README.md": b"# tiny\n"})
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, hub):
    """SmolLM2 loaded; Alice (admin) and Bob (user), each with one chat made before the start."""
    from webui.accounts.names import user_folder
    from webui.chat.history import ChatStore, Message

    root = tmp_path_factory.mktemp("lab")
    model_dir, user_dir = make_dirs(root)
    lab_users(user_dir)
    chats = {}
    for who, folder, text in (
        ("alice", user_dir, "Alice's secret plan about the orchard"),
        ("bob", user_dir / "users" / user_folder("bob"), "Bob's question about the bakery"),
    ):
        store = ChatStore(folder / "logs" / "chats")
        chat = store.new("Assistant")
        chat.messages = [Message("user", text), Message("assistant", f"Noted: {text}.")]
        chat.title = text
        store.save(chat)
        chats[who] = (chat.id, text, store.path_of("Assistant", chat.id))
    # Bob's own settings file, broken by hand (test_bobs_broken_settings_file_is_set_aside_and_he_is_told)
    (user_dir / "users" / user_folder("bob") / "settings.yaml").write_text("chat_window: [12\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        srv = start_server(root, model_dir, user_dir, "--model", SMOLLM)
    srv.chats = chats  # type: ignore[attr-defined]
    yield srv
    stop_server(srv)


def error_of(call) -> str:
    """The error message a Gradio API call ended with ("" when it did not fail)."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - gradio_client raises AppError (or ValueError in older ones)
        return str(exc)
    return ""


# ---- 2. Bob cannot reach Alice's data -----------------------------------------------------------


def test_bob_cannot_open_alices_chat_through_the_page_the_api_or_the_file_route(browser, lab):
    alice_id, alice_text, alice_file = lab.chats["alice"]
    bob_id, bob_text, _ = lab.chats["bob"]

    # the page: his list is his chats only, and searching for her words finds nothing
    page = log_in_page(browser, lab.url, *BOB)
    try:
        open_chat(page)
        page.wait_for_function("(t) => document.querySelector('#chat-box').innerText.includes(t)", arg=bob_text)
        options = dropdown_options(page, "chat-list")
        assert len(options) == 1 and options[0].startswith("Bob's question"), options
        page.locator("#chat-search input, #chat-search textarea").first.fill("orchard")
        page.wait_for_function(
            "() => document.querySelectorAll('#chat-list [role=option]').length === 0"
            " || !document.querySelector('#chat-list [role=listbox]')"
        )
        assert "orchard" not in page.locator("#chat-box").inner_text()
    finally:
        close_page(page)

    # Gradio's API with his session: the list and the search are his; his own id opens, hers does not
    client = gradio_client(lab.url, auth=BOB)
    search, pick = endpoint(client, "chat-search", "input"), endpoint(client, "chat-list", "input")
    assert alice_id not in json.dumps(client.predict("orchard", "Assistant", api_name=search))
    listed = client.predict("", "Assistant", api_name=search)  # (the list the page then offers)
    assert bob_id in json.dumps(listed) and alice_id not in json.dumps(listed), listed
    mine = client.predict(bob_id, "Assistant", api_name=pick)
    assert bob_text in json.dumps(mine, ensure_ascii=False)
    for chat_id, character in (
        (alice_id, "Assistant"),
        (f"../../../../logs/chats/Assistant/{alice_id}", "Assistant"),
        (alice_id, "../../../../logs/chats/Assistant"),
    ):
        out: list[Any] = []
        error = error_of(lambda c=chat_id, ch=character: out.append(client.predict(c, ch, api_name=pick)))
        assert error or out, chat_id
        assert "orchard" not in error + json.dumps(out, ensure_ascii=False), f"{chat_id} showed Alice's chat to Bob"
    # the same call with Alice's session opens it (the route works; it is Bob who is refused)
    alice_client = gradio_client(lab.url, auth=ALICE)
    alice_client.predict("", "Assistant", api_name=endpoint(alice_client, "chat-search", "input"))
    theirs = alice_client.predict(alice_id, "Assistant", api_name=endpoint(alice_client, "chat-list", "input"))
    assert "orchard" in json.dumps(theirs, ensure_ascii=False)

    # the file route: her chat's file, her notebook and settings are not served to Bob
    cookie = log_in(lab.url, *BOB).cookie
    for path in (alice_file, lab.user_dir / "settings.yaml", lab.user_dir / "users.yaml"):
        answer = request(lab.url, f"/gradio_api/file={path}", cookie=cookie)
        assert answer.status != 200 and b"orchard" not in answer.body, f"{path}: {answer.status}"


# ---- 3. admin controls --------------------------------------------------------------------------


ADMIN_CONTROLS = ("model-unload", "model-delete", "download-panel", "import-panel")


def test_bob_has_no_admin_controls_and_the_server_refuses_them_when_called_directly(browser, lab, tmp_path):
    shown = {}
    for login in (ALICE, BOB):
        page = log_in_page(browser, lab.url, *login)
        page.get_by_role("tab", name="Model").click()
        page.locator("#model-status").wait_for()
        shown[login[0]] = {c: page.locator(f"#{c}").is_visible() for c in ADMIN_CONTROLS}
        close_page(page)
    assert shown["alice"] == dict.fromkeys(ADMIN_CONTROLS, True), shown["alice"]
    assert shown["bob"] == dict.fromkeys(ADMIN_CONTROLS, False), shown["bob"]

    client = gradio_client(lab.url, auth=BOB)
    link = lab.model_dir / SMOLLM
    outside = tmp_path / "Outside.Q4_0.gguf"
    outside.write_bytes(b"GGUF" + bytes(2000))
    before = sorted(p.name for p in lab.model_dir.iterdir())

    refused = {
        "unload": error_of(lambda: client.predict(api_name=endpoint(client, "model-unload"))),
        "delete": error_of(lambda: client.predict(SMOLLM, api_name=endpoint(client, "model-delete-confirm"))),
        # (the loaded model is in his list: reloading it, with other options, is the admin's to do)
        "load": error_of(lambda: load_as(client, SMOLLM)),
        "import": error_of(lambda: import_as(client, outside)),
        "download": error_of(lambda: download_as(client)),
    }
    for action, error in refused.items():
        assert "admin" in error.lower(), f"{action} as Bob: {error or 'it ran'}"
    # a model that is not in his list at all is refused too (by the list, before the service)
    assert error_of(lambda: load_as(client, GEMMA)), "Bob loaded another model"
    assert lab.health()["model"] == SMOLLM, "the model was unloaded or replaced"
    assert link.is_symlink() and link.exists(), "Bob deleted the model"
    assert sorted(p.name for p in lab.model_dir.iterdir()) == before, "Bob added a model"
    assert outside.exists()
    # each refusal is in the audit log under Bob's name
    bobs = [e for e in audit_entries(lab.user_dir) if e["actor"] == "bob" and e["action"] == "refused"]
    assert len(bobs) >= len(refused), bobs


def test_bob_logs_out_and_the_next_person_at_the_machine_gets_the_log_in_page(browser, lab):
    """A class's shared machine: the page says whose it is and has a Log out that ends the session."""
    page = log_in_page(browser, lab.url, *BOB)
    button = page.locator("#log-out")
    expect(button).to_be_visible()
    expect(button).to_have_text("Log out (bob)")
    button.click()
    page.get_by_role("heading", name="Login").wait_for()
    # the session is over, not only the page: a reload (the next person) gets the log-in form again
    page.reload()
    page.get_by_role("heading", name="Login").wait_for()
    assert page.locator("#chat-box").count() == 0
    close_page(page)
    # and Alice, logging in at the same machine afterwards, sees her own name
    page = log_in_page(browser, lab.url, *ALICE)
    expect(page.locator("#log-out")).to_have_text("Log out (alice)")
    close_page(page)


def test_bobs_broken_settings_file_is_set_aside_and_he_is_told(browser, lab):
    """Bob's own settings.yaml, broken by hand, was only logged (and each later choice of his failed to save
    over it): his Model tab now says it was set aside and where it is kept; Alice's says nothing of it."""
    page = log_in_page(browser, lab.url, *BOB)
    page.get_by_role("tab", name="Model").click()
    notes = page.locator("#start-notes").first
    expect(notes).to_be_visible()
    expect(notes).to_contain_text("your own default settings are used")
    expect(notes).to_contain_text("settings.yaml.broken-")
    close_page(page)
    page = log_in_page(browser, lab.url, *ALICE)
    page.get_by_role("tab", name="Model").click()
    expect(page.locator("#start-notes").first).to_be_hidden()
    close_page(page)


def load_as(client: Any, name: str) -> Any:
    from reltools import endpoint_args

    api = endpoint(client, "model-load")
    args = endpoint_args(client, api, name=name, loader="llama.cpp")
    return client.predict(**args, api_name=api)


def import_as(client: Any, path: Path) -> Any:
    return client.predict(str(path), "link", api_name=endpoint(client, "import-start"))


def download_as(client: Any) -> Any:
    """List the stand-in hub's repo (anyone may look), then start downloading its file."""
    listing = client.predict(REPO, "", False, api_name=endpoint(client, "download-list"))
    choices = json.dumps(listing)
    assert HUB_FILE in choices, listing
    key = next(k for k in _choice_values(listing) if HUB_FILE in str(k))
    return client.predict(key, "", False, api_name=endpoint(client, "download-start"))


def _choice_values(value: Any) -> list[Any]:
    """Every dropdown choice value found in an API answer (updates are dicts with ``choices``)."""
    found: list[Any] = []
    if isinstance(value, dict):
        for c in value.get("choices") or []:
            found.append(c[1] if isinstance(c, list | tuple) else c)
        for v in value.values():
            found += _choice_values(v) if isinstance(v, dict | list | tuple) else []
    elif isinstance(value, list | tuple):
        for v in value:
            found += _choice_values(v)
    return found


# ---- 5. upgrading a folder made before log-in ----------------------------------------------------


def test_a_folder_from_before_log_in_stays_the_first_admins(browser, tmp_path):
    from browserkit import open_app

    model_dir, user_dir = make_dirs(tmp_path)
    before = Person("alice", word="pears", preset="Technical", max_tokens=6, folder=user_dir)
    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM)
    try:
        page = open_app(browser, srv.url)  # no log-in: one local user
        assert not page.locator("#log-out").is_visible(), "a Log out button on a page without log-in"
        type_everything(page, before)
        page.locator("#chat-input textarea").press("Enter")
        page.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=bot]').length === 1")
        wait_for_complete_reply(page)
        page.close()
    finally:
        stop_server(srv)
    assert len(before.chat_files()) == 1

    lab_users(user_dir)
    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM)
    try:
        nobody = Person("bob", word="-", preset="-", max_tokens=0, folder=user_dir / "users" / "bob")
        page = log_in_page(browser, srv.url, *ALICE)
        assert_sees_own(page, before, nobody)
        close_page(page)

        # Bob starts empty: none of the old chats, notebook, chat set-up or parameter choices
        page = log_in_page(browser, srv.url, *BOB)
        open_chat(page)
        seen = {"chat box": page.locator("#chat-box").inner_text(), "chats list": dropdown_options(page, "chat-list")}
        seen["system prompt"] = page.locator("#chat-system textarea").input_value()
        open_notebook(page)
        seen["notebook"] = page.locator("#notebook-text textarea").input_value()
        open_parameters(page)
        seen["preset"] = page.locator("#preset-dropdown input").input_value()
        seen["max_tokens"] = page.locator("#param-max_tokens input[type=number]").input_value()
        close_page(page)
        leaks = {
            what: value
            for what, value, leaked in (
                ("chat box", seen["chat box"], before.word in seen["chat box"]),
                ("chats list", seen["chats list"], seen["chats list"] != []),
                ("system prompt", seen["system prompt"], seen["system prompt"] == before.system),
                ("notebook", seen["notebook"], seen["notebook"] != ""),
                ("preset", seen["preset"], seen["preset"] == before.preset),
                ("max_tokens", seen["max_tokens"], float(seen["max_tokens"] or 0) == before.max_tokens),
            )
            if leaked
        }
        assert not leaks, f"Bob's page shows what was the single user's: {leaks}"
    finally:
        stop_server(srv)
    # nothing moved: the old files are where they were
    assert len(before.chat_files()) == 1
    assert (user_dir / "logs" / "notebook.txt").read_text(encoding="utf-8") == before.notebook
