"""Files and images attached in the Chat tab, as a person uses them, on real SmolLM2 in Chromium.

The files are made here with the real libraries (a PDF with fpdf2, PNGs with Pillow) and go in the
three ways a person attaches them: the paper clip's file picker, a drop on the chat box, and a paste
into the message box. SmolLM2 reads text only, so an image is refused - with a notice at once, and
with the service's error on Send, nothing lost; how a sent image shows is checked on a chat written
with the real store (as a vision model's chat is saved).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browserkit import bot_texts, choose_files, new_greedy_chat, open_chat, reload, wait_for_complete_reply, wait_text
from harness import wait_until

pytestmark = pytest.mark.browser

SHOTS = "/tmp"
CHIPS = "#chat-attachments .att-chip"
FACT = "The secret code word is PINEAPPLE."
QUESTION = "What is the secret code word in the document?"
FILE_INPUT = "#chat-attach-box input[type=file]"

#: Hands files to the page as a paste into the message box (the clipboard event a browser makes).
PASTE_JS = """([files]) => {
  const dt = new DataTransfer();
  for (const [bytes, name, type] of files) dt.items.add(new File([new Uint8Array(bytes)], name, { type }));
  const box = document.querySelector('#chat-input textarea');
  box.focus();
  box.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
}"""
#: ... and as files dragged from the desktop and dropped on the chat box.
DROP_JS = """([files]) => {
  const dt = new DataTransfer();
  for (const [bytes, name, type] of files) dt.items.add(new File([new Uint8Array(bytes)], name, { type }));
  const target = document.querySelector('#chat-box');
  for (const kind of ['dragenter', 'dragover', 'drop']) {
    target.dispatchEvent(new DragEvent(kind, { dataTransfer: dt, bubbles: true, cancelable: true }));
  }
}"""


def make_pdf(path: Path, text: str) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text=text)
    pdf.output(str(path))
    return path


def png_bytes(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


def as_js_files(*files: tuple[bytes, str, str]) -> list:
    return [[[list(data), name, mime] for data, name, mime in files]]


def chip_texts(page) -> list[str]:
    return [t.replace("✕", "").strip() for t in page.locator(CHIPS).all_inner_texts()]


def wait_chips(page, n: int) -> None:
    page.wait_for_function("(n) => document.querySelectorAll('#chat-attachments .att-chip').length === n", arg=n)


def toast_text(page) -> str:
    page.locator(".toast-body").first.wait_for()
    return " ".join(page.locator(".toast-body").all_inner_texts())


def close_toasts(page) -> None:
    page.evaluate("() => document.querySelectorAll('[data-testid=toast-close]').forEach((b) => b.click())")
    page.wait_for_function("() => !document.querySelector('.toast-body')")


def saved_chats(server) -> list[dict]:
    folder = server.user_dir / "logs" / "chats" / "Assistant"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if not p.name.startswith(".")]


def open_file_chooser(page):
    """Focus the paper clip and press Enter: the browser's file chooser opens."""
    clip = page.locator("#chat-attach")

    def press() -> None:
        clip.focus()
        expect(clip).to_be_focused()
        page.keyboard.press("Enter")

    return choose_files(page, press)


@pytest.fixture
def chat(page, server):
    """SmolLM2, greedy, short replies, a new empty chat."""
    return new_greedy_chat(page, server, max_tokens=40)


def test_a_pdf_is_read_answered_from_and_stays_on_its_message_after_a_reload(chat, server, tmp_path):
    page = chat
    pdf = make_pdf(tmp_path / "report.pdf", FACT)
    chooser = open_file_chooser(page)  # the paper clip, from the keyboard
    assert chooser.is_multiple() and ".pdf" in (chooser.element.get_attribute("accept") or "")
    chooser.set_files(str(pdf))
    wait_chips(page, 1)
    (chip,) = chip_texts(page)
    assert re.fullmatch(r"report\.pdf · 1 page · \d+ tokens", chip), chip
    # the context meter counts the file before it is sent
    wait_text(page, "#chat-meter", "Attachments (1):")
    assert re.search(r"\d+ tokens go with your next message; the context holds 2,048", page.inner_text("#chat-meter"))
    page.screenshot(path=f"{SHOTS}/attachments_pdf_chip.png")

    box = page.locator("#chat-input textarea")
    box.fill(QUESTION)
    box.press("Enter")  # Enter still sends
    page.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=bot]').length > 0")
    wait_for_complete_reply(page)
    assert "PINEAPPLE" in bot_texts(page)[-1].upper()
    # sent: the chips and the meter's line are gone, the box is empty; the message shows its file
    wait_chips(page, 0)
    assert box.input_value() == ""
    assert "Attachments" not in page.inner_text("#chat-meter")
    assert not page.locator("#chat-attach-fit").is_visible()
    users = page.locator("#chat-box [data-testid=user]").all_inner_texts()
    assert any(re.search(r"report\.pdf · 1 page · \d+ tokens", u) for u in users), users
    assert any(QUESTION in u for u in users)
    page.screenshot(path=f"{SHOTS}/attachments_pdf_sent.png")

    # stored with the chat, and offered for download as the user's file
    (saved,) = [c for c in saved_chats(server) if c["messages"] and c["messages"][0]["content"] == QUESTION]
    (record,) = saved["messages"][0]["attachments"]
    assert record["name"] == "report.pdf" and record["kind"] == "document" and record["pages"] == 1
    link = page.locator("#chat-box a", has_text="report.pdf")
    response = page.request.get(f"{server.url}/{link.get_attribute('href')}")
    assert response.ok and response.body() == pdf.read_bytes()

    # a reload shows the file on its message again, from the stored chat
    reload(page)
    open_chat(page)
    wait_text(page, "#chat-box", QUESTION)
    users = page.locator("#chat-box [data-testid=user]").all_inner_texts()
    assert any(re.search(r"report\.pdf · 1 page · \d+ tokens", u) for u in users), users
    assert page.locator("#chat-box a", has_text="report.pdf").count() == 1


def test_an_image_for_a_text_only_model_is_flagged_at_once_and_refused_losing_nothing(chat, server):
    page = chat
    box = page.locator("#chat-input textarea")
    box.fill("What colour is this picture?")
    page.evaluate(PASTE_JS, as_js_files((png_bytes(640, 480), "image.png", "image/png")))  # a pasted screenshot
    wait_chips(page, 1)
    note = toast_text(page)
    assert "cannot see images" in note and "vision model" in note and "Model tab" in note
    (chip,) = chip_texts(page)
    assert chip.startswith("image.png · 640×480") and "cannot see images" in chip
    assert page.locator(f"{CHIPS}.att-warn").count() == 1
    wait_text(page, "#chat-meter", "1 image(s) not counted: the loaded model cannot see images")
    assert box.input_value() == "What colour is this picture?"  # the paste did not touch the text
    page.screenshot(path=f"{SHOTS}/attachments_image_flagged.png")
    close_toasts(page)

    page.locator("#chat-send").click()
    error = toast_text(page)
    assert "cannot see images" in error and "image.png" in error
    page.screenshot(path=f"{SHOTS}/attachments_image_refused.png")
    # nothing lost, nothing sent or saved
    assert box.input_value() == "What colour is this picture?"
    assert chip_texts(page) == [chip]
    assert page.locator("#chat-box [data-testid=user]").count() == 0
    assert not any(
        c["messages"] and c["messages"][0]["content"] == "What colour is this picture?" for c in saved_chats(server)
    )
    assert not page.locator("#chat-send").evaluate("b => b.classList.contains('generating')")


def test_a_still_gif_dropped_on_the_chat_is_taken_as_an_image_and_the_picker_offers_gifs(chat):
    from PIL import Image

    page = chat
    out = io.BytesIO()
    Image.new("RGB", (80, 60), (30, 90, 200)).convert("P").save(out, format="GIF")
    page.evaluate(DROP_JS, as_js_files((out.getvalue(), "wave.gif", "image/gif")))  # from the desktop
    wait_chips(page, 1)
    (chip,) = chip_texts(page)
    # read as the picture it is (the text-only model is flagged), not refused as a document
    assert chip.startswith("wave.gif · 80×60") and "cannot see images" in chip, chip
    close_toasts(page)
    chooser = open_file_chooser(page)  # the paper clip's file chooser lists GIFs with the other images
    assert ".gif" in (page.locator(FILE_INPUT).get_attribute("accept") or "").split(",")
    chooser.set_files([])
    assert len(chip_texts(page)) == 1


def test_a_corrupt_docx_is_refused_with_its_reason_and_the_other_files_stay(chat, tmp_path):
    page = chat
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 this is not really a Word document")
    notes = tmp_path / "notes.txt"
    notes.write_text("Meeting moved to Thursday.\n", encoding="utf-8")
    page.locator(FILE_INPUT).set_input_files([str(broken), str(notes)])
    error = toast_text(page)
    assert "broken.docx" in error and "damaged" in error
    wait_chips(page, 1)
    (chip,) = chip_texts(page)
    assert re.fullmatch(r"notes\.txt · \d+ tokens", chip), chip
    page.screenshot(path=f"{SHOTS}/attachments_corrupt_docx.png")


def test_a_chip_is_removed_before_sending_and_only_the_others_go(chat, server):
    page = chat
    page.evaluate(
        DROP_JS,
        as_js_files(
            (b"Apples are red.\n", "apples.txt", "text/plain"), (b"Bananas are yellow.\n", "bananas.txt", "text/plain")
        ),
    )
    wait_chips(page, 2)
    assert [c.split(" · ")[0] for c in chip_texts(page)] == ["apples.txt", "bananas.txt"]
    wait_text(page, "#chat-meter", "Attachments (2):")
    # keyboard: the ✕ is a button with its file's name
    remove = page.get_by_role("button", name="Remove apples.txt")
    remove.focus()
    page.keyboard.press("Enter")
    wait_chips(page, 1)
    assert chip_texts(page)[0].startswith("bananas.txt")
    wait_text(page, "#chat-meter", "Attachments (1):")
    page.screenshot(path=f"{SHOTS}/attachments_removed_chip.png")

    box = page.locator("#chat-input textarea")
    box.fill("What colour are the fruits in the file?")
    box.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#chat-box [data-testid=bot]').length > 0")
    wait_for_complete_reply(page)
    wait_chips(page, 0)
    (saved,) = [c for c in saved_chats(server) if c["messages"] and "fruits" in c["messages"][0]["content"]]
    assert [a["name"] for a in saved["messages"][0]["attachments"]] == ["bananas.txt"]
    users = " ".join(page.locator("#chat-box [data-testid=user]").all_inner_texts())
    assert "bananas.txt" in users and "apples.txt" not in users


def test_a_file_too_big_is_refused_then_sent_cut_to_fit_when_asked(chat, server, tmp_path):
    page = chat
    long_file = tmp_path / "long.txt"
    long_file.write_text("The quick brown fox jumps over the lazy dog. " * 400, encoding="utf-8")
    page.locator(FILE_INPUT).set_input_files(str(long_file))
    wait_chips(page, 1)
    wait_text(page, "#chat-meter", "it may not fit")
    box = page.locator("#chat-input textarea")
    box.fill("Summarise the file.")
    box.press("Enter")
    error = toast_text(page)
    assert "long.txt" in error and "fit" in error and "Send only what fits" in error
    page.screenshot(path=f"{SHOTS}/attachments_too_big.png")
    # refused whole: nothing sent, the text and the chip stay, and the way out is pointed at
    assert box.input_value() == "Summarise the file."
    assert len(chip_texts(page)) == 1
    assert page.locator("#chat-box [data-testid=user]").count() == 0
    fit = page.locator("#chat-attach-fit")
    assert fit.is_visible() and "att-offer" in (fit.get_attribute("class") or "")
    close_toasts(page)

    fit.locator("input[type=checkbox]").check()
    page.locator("#chat-send").click()
    page.locator("#chat-box [data-testid=user]").first.wait_for()
    wait_for_complete_reply(page)  # a prompt of ~2,000 tokens: long on a busy machine
    wait_text(page, "#chat-tool-note", "Only the parts that fit were sent")
    wait_chips(page, 0)
    assert not fit.is_visible()
    (saved,) = [
        c for c in saved_chats(server) if c["messages"] and c["messages"][0]["content"] == "Summarise the file."
    ]
    (record,) = saved["messages"][0]["attachments"]
    assert 0 < record["kept_chars"] < len(long_file.read_text())
    assert "trimmed to fit" in " ".join(page.locator("#chat-box [data-testid=user]").all_inner_texts())


def test_a_sent_image_shows_as_a_picture_in_the_chat(page, server):
    """A chat with an image (what a vision model's chat holds), written by the real store, shows the
    picture itself, served from the page; and so after a reload."""
    from webui.chat.attachments import read_upload
    from webui.chat.history import ChatStore, Message

    store = ChatStore(server.user_dir / "logs" / "chats")
    saved = store.new("Assistant")
    saved.title = "Picture chat"
    upload = read_upload("sunset.png", png_bytes(320, 200, (250, 120, 40)))
    record = store.files("Assistant", saved.id).store(upload, tokens=64)
    saved.messages = [
        Message("user", "What is in this picture?", attachments=[record]),
        Message("assistant", "An orange square."),
    ]
    store.save(saved)

    reload(page)  # the chats list as it is now
    open_chat(page)
    page.locator("#chat-list input").click()
    page.get_by_role("option", name=re.compile(r"^Picture chat")).click()
    wait_text(page, "#chat-box", "An orange square.")
    image = page.locator("#chat-box [data-testid=user] img")
    image.wait_for()
    page.wait_for_function(
        "() => { const i = document.querySelector('#chat-box [data-testid=user] img');"
        " return i && i.complete && i.naturalWidth === 320; }"
    )
    page.screenshot(path=f"{SHOTS}/attachments_image_in_chat.png")
    reload(page)
    open_chat(page)
    wait_text(page, "#chat-box", "An orange square.")
    page.wait_for_function(
        "() => { const i = document.querySelector('#chat-box [data-testid=user] img');"
        " return i && i.complete && i.naturalWidth === 320; }"
    )


def test_the_entries_of_a_chat_with_files_map_back_to_their_messages(tmp_path):
    """Editing a message in the box finds the right message when files are shown as entries of their own
    (no browser: the mapping the Chat tab's edit handler uses, on a chat saved by the real store)."""
    from webui.chat.attachments import read_upload
    from webui.chat.history import ChatStore, Message
    from webui.ui.chat_page import entry_targets, to_display

    store = ChatStore(tmp_path / "chats")
    saved = store.new("Assistant")
    files = store.files("Assistant", saved.id)
    pdf = make_pdf(tmp_path / "report.pdf", FACT)
    doc = files.store(read_upload("report.pdf", pdf.read_bytes()), tokens=23)
    picture = files.store(read_upload("cat.png", png_bytes()), tokens=None)
    saved.messages = [
        Message("user", QUESTION, attachments=[doc, picture]),
        Message("assistant", "PINEAPPLE."),
        Message("user", "", attachments=[doc]),  # files only: no text bubble
        Message("assistant", "The same file."),
    ]
    store.save(saved)
    loaded = store.load("Assistant", saved.id)
    shown = to_display(loaded, "en", None)
    # (Markdown: a file name's dots and brackets come escaped)
    assert [re.sub(r"\\(.)", r"\1", e["content"]) for e in shown] == [
        "📎 report.pdf · 1 page · 23 tokens",
        "📎 cat.png · 64×48",
        QUESTION,
        "PINEAPPLE.",
        "📎 report.pdf · 1 page · 23 tokens",
        "The same file.",
    ]
    assert entry_targets(loaded, shown) == [
        (0, "attachment"),
        (0, "attachment"),
        (0, "text"),
        (1, "text"),
        (2, "attachment"),
        (3, "text"),
    ]


def test_a_chat_downloads_as_a_zip_with_its_files_and_comes_back_from_it(page, server, tmp_path):
    """The zip download holds the chat and its attached files; uploading it makes a new chat whose
    message has its file again (stored under the new chat)."""
    import zipfile

    from webui.chat.attachments import read_upload
    from webui.chat.history import ChatStore, Message

    store = ChatStore(server.user_dir / "logs" / "chats")
    saved = store.new("Assistant")
    saved.title = "Zip chat"
    record = store.files("Assistant", saved.id).store(read_upload("plan.md", b"# Plan\n\nShip on Friday.\n"), tokens=9)
    saved.messages = [Message("user", "Read the plan.", attachments=[record]), Message("assistant", "Friday.")]
    store.save(saved)

    reload(page)
    open_chat(page)
    page.locator("#chat-list input").click()
    page.get_by_role("option", name=re.compile(r"^Zip chat")).click()
    wait_text(page, "#chat-box", "Friday.")
    with page.expect_download() as info:
        page.locator("#chat-download-zip").click()
    zipped = tmp_path / "chat.zip"
    info.value.save_as(zipped)
    names = zipfile.ZipFile(zipped).namelist()
    assert "chat.json" in names and f"files/{record.file}" in names
    # one click downloads this chat (the JSON and Markdown buttons too), never a file of an earlier click
    for button, check in (
        ("json", lambda text: json.loads(text)["title"] == "Zip chat"),
        ("md", lambda text: "plan.md" in text),
    ):
        with page.expect_download() as info:
            page.locator(f"#chat-download-{button}").click()
        assert check(Path(info.value.path()).read_text(encoding="utf-8")), button

    choose_files(page, page.locator("#chat-upload").click).set_files(str(zipped))
    folder = server.user_dir / "logs" / "chats" / "Assistant"

    def copied() -> list:
        return [p for p in folder.glob("*.files") if p.name != f"{saved.id}.files" and (p / record.file).is_file()]

    (copy,) = wait_until(copied, "the imported chat's copy of plan.md")
    assert (copy / record.file).read_bytes() == b"# Plan\n\nShip on Friday.\n"
    # the imported chat is open, and listed beside the original
    page.wait_for_function("() => document.querySelector('#chat-list input').value.startsWith('Zip chat')")
    users = " ".join(page.locator("#chat-box [data-testid=user]").all_inner_texts())
    assert "plan.md" in users
    page.locator("#chat-list input").click()
    assert page.get_by_role("option", name=re.compile(r"^Zip chat")).count() == 2
