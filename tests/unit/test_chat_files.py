"""A chat's attached files on disk: stored once, pruned when no message names them, gone with the chat."""

import pytest

from webui.chat.attachments import ACCEPTED_EXTENSIONS, read_upload
from webui.chat.history import ChatStore, Message
from webui.chat.service import remove_last
from webui.errors import AttachmentError


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


# ----- images by their bytes: what a message takes and what it names ----------------------------------
def _picture(fmt: str) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).convert("P" if fmt == "GIF" else "RGB").save(buffer, fmt)
    return buffer.getvalue()


def test_a_still_gif_is_an_image_of_the_message():
    upload = read_upload("wave.gif", _picture("GIF"))
    assert upload.kind == "image" and upload.image is not None
    assert (upload.image.width, upload.image.height) == (8, 6)
    assert ".gif" in ACCEPTED_EXTENSIONS  # and the file picker offers it


def test_a_misnamed_image_is_read_as_the_image_it_is():
    upload = read_upload("notes.txt", _picture("PNG"))
    assert upload.kind == "image" and upload.image is not None


@pytest.mark.parametrize(
    ("name", "fmt", "said"), [("scan.bmp", "BMP", "is a BMP file"), ("x.tiff", "TIFF", "is a TIFF")]
)
def test_a_picture_in_another_format_is_named_with_what_to_convert_it_to(name, fmt, said):
    with pytest.raises(AttachmentError) as caught:
        read_upload(name, _picture(fmt))
    message = str(caught.value)
    assert said in message and "convert it to PNG or JPEG" in message
    assert "attach it as an image" not in message  # it was attached as one
