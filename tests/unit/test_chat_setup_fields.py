"""A chat keeps its set-up (mode, system prompt, persona, instruction template, thinking) in its file; the
Chat tab's page restores it, and a new chat starts with the last one used. The Compare tab's
inputs are remembered the same way."""

from __future__ import annotations

import json

import yaml

from webui.chat.history import SETUP_FIELDS, Chat, ChatStore, Message
from webui.services import Services
from webui.settings import Settings
from webui.ui.chat_page import MODEL_TEMPLATE, ChatPage, setup_of
from webui.ui.compare_tab import ROWS, UNUSED, restored_setup, saved_setup

SETUP = {
    "mode": "chat",
    "system_prompt": "Answer in French.",
    "persona_name": "Ada",
    "persona_bio": "A student of physics.",
    "instruction_template": "Alpaca",
    "thinking": False,
}


def test_the_setup_is_written_with_the_chat_and_read_back(tmp_path):
    store = ChatStore(tmp_path)
    chat = store.new("Assistant")
    assert chat.apply_setup(SETUP) is True
    chat.messages.append(Message("user", "Hi"))
    store.save(chat)
    data = json.loads(store.path_of("Assistant", chat.id).read_text())
    assert {k: data[k] for k in SETUP_FIELDS} == SETUP
    assert data["internal"] == [["Hi", ""]]  # text-generation-webui's view is still written
    assert store.load("Assistant", chat.id).setup() == SETUP
    assert chat.apply_setup(SETUP) is False  # nothing changed


def test_older_files_and_text_generation_webui_chats_load_with_defaults(tmp_path):
    store = ChatStore(tmp_path)
    folder = store.character_folder("Assistant")
    folder.mkdir(parents=True)
    (folder / "tgw.json").write_text(json.dumps({"internal": [["Hello", "Hi!"]], "visible": [["Hello", "Hi!"]]}))
    (folder / "old.json").write_text(
        json.dumps({"title": "Old", "mode": "chat", "messages": [{"role": "user", "content": "Yo"}]})
    )
    defaults = Chat(id="x", character="Assistant").setup()
    assert defaults == {
        "mode": "instruct",
        "system_prompt": "",
        "persona_name": "You",
        "persona_bio": "",
        "instruction_template": None,  # never recorded: the page leaves the template dropdown as it is
        "thinking": True,
    }
    assert store.load("Assistant", "tgw").setup() == defaults
    assert store.load("Assistant", "old").setup() == {**defaults, "mode": "chat"}


def test_a_hand_edited_setup_of_the_wrong_type_is_left_out(tmp_path):
    store = ChatStore(tmp_path)
    folder = store.character_folder("Assistant")
    folder.mkdir(parents=True)
    bad = {
        "messages": [],
        "system_prompt": ["not", "text"],
        "persona_name": 3,
        "instruction_template": None,
        "thinking": "no",
    }
    (folder / "bad.json").write_text(json.dumps(bad))
    chat = store.load("Assistant", "bad")
    assert (chat.system_prompt, chat.persona_name, chat.instruction_template, chat.thinking) == ("", "You", None, True)


def test_a_setup_change_does_not_move_the_chat_up_the_list(tmp_path):
    store = ChatStore(tmp_path)
    chat = store.new("Assistant")
    store.save(chat)
    when = chat.updated
    chat.apply_setup({"system_prompt": "Be brief."})
    store.save(chat, touch=False)
    assert store.load("Assistant", chat.id).updated == when
    assert store.load("Assistant", chat.id).system_prompt == "Be brief."


def test_a_branch_keeps_the_setup(tmp_path):
    store = ChatStore(tmp_path)
    chat = store.new("Assistant")
    chat.apply_setup(SETUP)
    chat.messages = [Message("user", "Hi"), Message("assistant", "Hello")]
    store.save(chat)
    assert store.branch(chat, 1).setup() == SETUP


def test_setup_of_the_page_inputs():
    assert setup_of("chat", "Rules", "Ada", "Bio", MODEL_TEMPLATE)["instruction_template"] == ""
    assert setup_of("nonsense", None, None, None, None) == {
        "mode": "instruct",
        "system_prompt": "",
        "persona_name": "You",
        "persona_bio": "",
        "instruction_template": "",
        "thinking": True,
    }


def page_on(tmp_path) -> ChatPage:
    """A Chat tab's page on the user folder ``tmp_path/user``, its settings read from settings.yaml as at a start."""
    path = tmp_path / "user" / "settings.yaml"
    settings = Settings.from_file(path, {"user_data_dir": str(tmp_path / "user")}) if path.exists() else None
    return ChatPage(Services.build(settings or Settings(user_data_dir=tmp_path / "user"), path))


def test_the_page_saves_the_inputs_into_the_open_chat_and_remembers_them_for_new_chats(tmp_path):
    page = page_on(tmp_path)
    services = page.services
    chat = page.fresh_chat("Assistant")
    chat.messages.append(Message("user", "Hi"))
    services.chats.save(chat)
    state = page.remember_open(chat)

    page.keep_setup(state, "Assistant", "chat", "Answer in French.", "Ada", "A student of physics.", "Alpaca", False)
    assert services.chats.load("Assistant", chat.id).setup() == SETUP
    saved = yaml.safe_load((tmp_path / "user" / "settings.yaml").read_text())
    assert saved["chat_setup"] == SETUP  # survives a restart

    # a new chat starts with the last-used set-up (also after a restart: a new Services reads the file)
    assert page_on(tmp_path).fresh_chat("Assistant").setup() == SETUP

    # the page shows the chat's own set-up (no model loaded: the template is chosen, its note empty)
    assert page.setup_values(services.chats.load("Assistant", chat.id)) == [
        "chat",
        "Answer in French.",
        "Ada",
        "A student of physics.",
        "Alpaca",
        "",
        {"__type__": "update", "visible": False, "value": False},  # no model: no Thinking switch
    ]
    # a chat that is not on disk yet: only remembered (its first message saves it with the set-up)
    page.keep_setup(("Assistant", "20990101-000000-abcdef"), "Assistant", "instruct", "Other", "Bo", "", None)
    assert not services.chats.path_of("Assistant", "20990101-000000-abcdef").exists()
    assert page.last_setup()["system_prompt"] == "Other"


def test_a_template_file_broken_by_hand_is_not_saved_into_the_chat(tmp_path):
    """The Chat tab refuses such a pick (its note says why); the set-up save of the same pick, which can
    land first, keeps the template in force instead, so a reload does not bring the broken one back."""
    page = page_on(tmp_path)
    services = page.services
    (tmp_path / "user" / "instruction-templates" / "BadTpl.yaml").write_text(
        "instruction_template: |-\n  {% for m in messages %}{{ m.content }\n"
    )
    chat = page.fresh_chat("Assistant")
    chat.messages.append(Message("user", "Hi"))
    services.chats.save(chat)
    state = page.remember_open(chat)
    page.keep_setup(state, "Assistant", "instruct", "", "You", "", "Alpaca", True)
    assert services.chats.load("Assistant", chat.id).setup()["instruction_template"] == "Alpaca"
    page.keep_setup(state, "Assistant", "instruct", "Be brief.", "You", "", "BadTpl", True)
    kept = services.chats.load("Assistant", chat.id).setup()
    assert kept["system_prompt"] == "Be brief." and kept["instruction_template"] != "BadTpl"
    assert page.last_setup()["instruction_template"] != "BadTpl"

    # A chat saved with a template that was broken since: opened, it shows the reason, not the broken pick.
    chat.apply_setup({**kept, "instruction_template": "BadTpl"})
    services.chats.save(chat)
    choice, note = page.setup_values(services.chats.load("Assistant", chat.id))[4:6]
    assert choice == MODEL_TEMPLATE and "Chat template 'BadTpl' has a syntax error on line 1" in note


def test_an_old_chat_leaves_the_template_as_it_is(tmp_path):
    page = page_on(tmp_path)
    old = Chat(id="old", character="Assistant")
    values = page.setup_values(old, otherwise=lambda: ["Vicuna", "note"])
    assert values[:6] == ["instruct", "", "You", "", "Vicuna", "note"]


def test_the_compare_inputs_round_trip_and_bad_values_get_the_start_values():
    rows = ["m1.gguf", "m2.gguf", "", ""] + ["Default", "", "", ""]
    setup = saved_setup("Why?", "Be brief.", "sweep", 7.0, 64.0, "top_p", "0.5, 0.9", *rows)
    start_m, start_p = ["a"] + [UNUSED] * (ROWS - 1), ["Default"] * ROWS
    assert restored_setup(setup, start_m, start_p) == setup
    assert restored_setup({"mode": "x", "seed": "1", "models": [3]}, start_m, start_p)["models"] == start_m
    broken = restored_setup({"mode": "x", "seed": "1", "sweep_param": "nope"}, start_m, start_p)
    assert (broken["mode"], broken["sweep_param"]) == ("models", "temperature")
    assert restored_setup(None, start_m, start_p)["prompt"] == ""
