"""A chat's attached files on disk: stored once, pruned when no message names them, gone with the chat."""

from webui.chat.attachments import read_upload
from webui.chat.history import ChatStore, Message
from webui.chat.service import remove_last


def test_stored_files_follow_the_messages_that_name_them(tmp_path):
    store = ChatStore(tmp_path / "chats")
    chat = store.new("Assistant")
    files = store.files("Assistant", chat.id)
    kept = files.store(read_upload("a.txt", b"Alpha."), tokens=3)
    again = files.store(read_upload("a.txt", b"Alpha."), tokens=3)
    assert again.file == kept.file  # the same content is written once
    taken = files.store(read_upload("b.md", b"# Beta"), tokens=4)
    chat.messages = [
        Message("user", "one", attachments=[kept]),
        Message("assistant", "ok"),
        Message("user", "two", attachments=[taken]),
        Message("assistant", "ok"),
    ]
    store.save(chat)
    assert sorted(p.name for p in files.folder.iterdir()) == sorted(
        [kept.file, f"{kept.file}.txt", taken.file, f"{taken.file}.txt"]
    )
    assert remove_last(chat) == "two"
    store.save(chat)
    assert store.prune_files(chat) == 2
    assert sorted(p.name for p in files.folder.iterdir()) == sorted([kept.file, f"{kept.file}.txt"])
    assert "Alpha." in files.materials(store.load("Assistant", chat.id).messages[0].attachments).text
    remove_last(chat)
    store.save(chat)
    store.prune_files(chat)
    assert not files.folder.exists()
    store.delete("Assistant", chat.id)
