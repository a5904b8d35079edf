"""Chat features that used to live in the Chat tab's closures: branch, Markdown/JSON export, card export files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from webui.characters.character import Character
from webui.characters.store import CharacterStore
from webui.chat.export import chat_markdown, export_chat
from webui.chat.history import Chat, ChatStore, Message
from webui.errors import BranchRangeError, InvalidNameError
from webui.params import SamplingParams


def conversation(store: ChatStore) -> Chat:
    chat = store.new("Bot", mode="chat")
    chat.title = "Treasure hunt"
    reply = Message(
        "assistant", "Go north.", stats={"tokens": 3, "tokens_per_second": 9.0, "ttft": 0.1, "model": "m", "seed": 1}
    )
    reply.add_version("Go south.")
    chat.messages = [
        Message("system", "Be a guide."),
        Message("user", "Where?"),
        reply,
        Message("user", "And then?"),
        Message("assistant", "Dig."),
    ]
    store.save(chat)
    return chat


def test_branch_copies_the_first_messages_with_their_versions_and_saves_it(tmp_path):
    store = ChatStore(tmp_path)
    chat = conversation(store)
    branch = store.branch(chat, 3)
    assert branch.id != chat.id and branch.title == "Treasure hunt (branch)" and branch.mode == "chat"
    assert [m.content for m in branch.messages] == ["Be a guide.", "Where?", "Go south."]
    assert branch.messages[2].versions == ["Go north.", "Go south."] and branch.messages[2].active == 1
    on_disk = store.load("Bot", branch.id)
    assert [m.content for m in on_disk.messages] == ["Be a guide.", "Where?", "Go south."]
    # A copy: changing the branch leaves the original as it was
    branch.messages[2].add_version("Go east.")
    branch.messages[2].stats = {"tokens": 1}
    assert chat.messages[2].versions == ["Go north.", "Go south."]
    assert store.load("Bot", chat.id).messages[2].versions == ["Go north.", "Go south."]
    assert len(store.load("Bot", chat.id).messages) == 5


def test_branch_without_a_number_copies_every_message(tmp_path):
    store = ChatStore(tmp_path)
    chat = conversation(store)
    assert len(store.branch(chat).messages) == 5


@pytest.mark.parametrize("at", [0, -1, 6])
def test_branch_outside_the_chat_is_a_typed_error_with_a_catalogue_key(tmp_path, at):
    store = ChatStore(tmp_path)
    chat = conversation(store)
    with pytest.raises(BranchRangeError) as caught:
        store.branch(chat, at)
    assert caught.value.key == "chat.branch_range" and caught.value.fields == {"n": 5}
    assert caught.value.message == "Pick a message number from 1 to 5."
    assert len(store.list("Bot")) == 1  # nothing saved


def test_markdown_export_names_the_speakers_and_leaves_system_messages_out(tmp_path):
    chat = conversation(ChatStore(tmp_path))
    md = chat_markdown(chat, "Guide", "Ada")
    assert md.startswith("# Treasure hunt\n")
    assert "**Ada:**\n\nWhere?" in md and "**Guide:**\n\nGo south." in md and "**Guide:**\n\nDig." in md
    assert "Be a guide." not in md and "Go north." not in md


def test_export_writes_json_and_markdown_into_the_folder_atomically(tmp_path):
    store = ChatStore(tmp_path / "chats")
    chat = conversation(store)
    folder = tmp_path / "exports"
    md = export_chat(chat, folder, "md", character_name="Guide", user_name="Ada")
    js = export_chat(chat, folder, "json", character_name="Guide", user_name="Ada")
    assert (md, js) == (folder / f"{chat.id}.md", folder / f"{chat.id}.json")
    assert md.read_text(encoding="utf-8") == chat_markdown(chat, "Guide", "Ada")
    data = json.loads(js.read_text(encoding="utf-8"))
    assert data["title"] == "Treasure hunt" and data["messages"][2]["versions"] == ["Go north.", "Go south."]
    assert sorted(p.name for p in folder.iterdir()) == sorted([md.name, js.name])  # no temp file left
    # The JSON download imports back as the same conversation
    again = store.import_file("Bot", js.read_bytes())
    assert [m.content for m in again.messages] == [m.content for m in chat.messages]


def test_export_refuses_a_chat_id_that_is_not_a_file_name(tmp_path):
    chat = Chat("../../escape", "Bot")
    with pytest.raises(InvalidNameError):
        export_chat(chat, tmp_path, "json", character_name="Bot", user_name="You")
    assert list(tmp_path.iterdir()) == []


def test_character_export_files_are_a_png_card_a_json_card_and_a_modelfile(tmp_path):
    from webui.characters.cards import read_card

    store = CharacterStore(tmp_path / "characters")
    store.save("Guide", Character("Guide", "You guide travellers.", greeting="Hello, traveller."))
    folder = tmp_path / "exports"
    paths = store.export_files("Guide", folder, SamplingParams(temperature=0.3), "model.gguf")
    assert [p.name for p in paths] == ["Guide.png", "Guide.json", "Guide.Modelfile"]
    card, _, _ = read_card("Guide.png", paths[0].read_bytes())
    assert card.name == "Guide" and card.greeting == "Hello, traveller."
    assert json.loads(paths[1].read_text(encoding="utf-8"))["data"]["first_mes"] == "Hello, traveller."
    modelfile = paths[2].read_text(encoding="utf-8")
    assert modelfile.startswith("FROM model.gguf") and "PARAMETER temperature 0.3" in modelfile


def test_character_export_of_a_missing_character_writes_nothing(tmp_path):
    from webui.errors import CharacterNotFoundError

    store = CharacterStore(tmp_path / "characters")
    folder = tmp_path / "exports"
    with pytest.raises(CharacterNotFoundError):
        store.export_files("Nobody", folder, None, None)
    assert not folder.exists() or list(Path(folder).iterdir()) == []
