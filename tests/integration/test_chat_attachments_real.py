"""Attachments in chat turns on the real SmolLM2: stored with the chat, in the prompt, refused when too big.

The documents are made with real libraries (python-docx; plain text), read by the app's own readers.
"""

import io
import json
import zipfile

import pytest
from PIL import Image

from harness import smollm_generator
from testdata import PROJECT_DIR
from webui.attachments.types import IMAGE_MARKER
from webui.chat.export import chat_markdown, export_chat
from webui.chat.history import ChatStore
from webui.chat.prompt import Character, ChatOptions, Persona
from webui.chat.service import ChatService
from webui.errors import AttachmentError, UnsupportedFeatureError
from webui.params import SamplingParams

pytestmark = pytest.mark.integration
GREEDY = SamplingParams(do_sample=False, max_tokens=24)


@pytest.fixture(scope="module")
def service(smollm_path, tmp_path_factory):
    for gen in smollm_generator(smollm_path, tmp_path_factory, n_ctx=1024):
        yield ChatService(gen, ChatStore(tmp_path_factory.mktemp("chats")), model_template)


def model_template(loaded):
    from webui.templates.chat_template import InstructionTemplateStore, choose_template

    return choose_template(
        loaded.backend.chat_template, None, InstructionTemplateStore(PROJECT_DIR / "instruction-templates")
    )


def run(service, chat, text="", params=GREEDY, **kw):
    running = service.turn(
        chat,
        "send",
        text=text,
        character=Character("Assistant", ""),
        options=ChatOptions(persona=Persona("User")),
        params=params,
        **kw,
    )
    out = list(running)
    return running, out[-1] if out else ""


def docx_bytes(*paragraphs: str) -> bytes:
    import docx

    document = docx.Document()
    for p in paragraphs:
        document.add_paragraph(p)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def png_bytes(color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_document_is_in_the_prompt_and_stored_with_the_chat(service):
    upload = service.read_upload("notes.docx", docx_bytes("The meeting is on Tuesday.", "Bring the blue folder."))
    tokens = service.upload_tokens(upload)
    assert tokens and tokens > 10
    assert "notes.docx" in upload.describe(tokens) and f"{tokens} tokens" in upload.describe(tokens)
    chat = service.store.new("Assistant")
    running, reply = run(service, chat, "When is the meeting?", uploads=[upload])
    prompt = running.prompt
    assert prompt is not None
    assert '<document name="notes.docx">' in prompt.text and "Bring the blue folder." in prompt.text
    assert prompt.text.index("Bring the blue folder.") < prompt.text.index("When is the meeting?")
    # The context meter's count includes the document.
    assert prompt.tokens > tokens
    saved = service.store.load("Assistant", chat.id)
    [record] = saved.messages[0].attachments
    assert record.name == "notes.docx" and record.kind == "document" and record.tokens == tokens
    stored = service.attachment_path(saved, record)
    assert stored.read_bytes() == upload.data
    assert stored.parent.name == f"{chat.id}.files"
    # The next turn (after a "restart": the chat read back from disk) still sends the document.
    running, _ = run(service, saved, "What should I bring?")
    assert "Bring the blue folder." in running.prompt.text


def test_a_document_too_big_is_refused_before_anything_is_saved(service):
    text = " ".join(f"word{i}" for i in range(3000)).encode()
    upload = service.read_upload("big.txt", text)
    chat = service.store.new("Assistant")
    with pytest.raises(AttachmentError) as caught:
        run(service, chat, "Summarise", uploads=[upload])
    message = caught.value.message
    assert "big.txt has" in message and "tokens;" in message and "fit in this model's context" in message
    assert chat.messages == []
    assert not service.store.path_of("Assistant", chat.id).exists()
    assert not service.store.files("Assistant", chat.id).folder.exists()


def test_trim_sends_only_the_part_that_fits_with_a_notice(service):
    text = " ".join(f"word{i}" for i in range(3000)).encode()
    upload = service.read_upload("big.txt", text)
    chat = service.store.new("Assistant")
    running, _ = run(service, chat, "Summarise", uploads=[upload], fit="trim")
    assert "Only the parts that fit were sent" in running.notice and "big.txt" in running.notice
    assert running.prompt.tokens <= 1024
    assert "word0 word1" in running.prompt.text and "word2999" not in running.prompt.text
    [record] = service.store.load("Assistant", chat.id).messages[0].attachments
    assert record.kept_chars and record.kept_chars < len(text) and "trimmed" in record.describe()


def test_an_image_for_a_text_only_model_is_refused_and_nothing_is_lost(service):
    upload = service.read_upload("photo.png", png_bytes())
    assert upload.kind == "image" and not service.can_see_images()
    assert service.upload_tokens(upload) is None
    chat = service.store.new("Assistant")
    run(service, chat, "Hello")
    before = json.dumps(service.store.load("Assistant", chat.id).to_json())
    with pytest.raises(UnsupportedFeatureError, match="cannot see images"):
        run(service, chat, "What is in the picture?", uploads=[upload])
    assert json.dumps(service.store.load("Assistant", chat.id).to_json()) == before


def test_typed_marker_text_does_not_become_an_image(service):
    upload = service.read_upload("a.txt", b"Alpha.")
    chat = service.store.new("Assistant")
    running, _ = run(service, chat, f"Is {IMAGE_MARKER} here?", uploads=[upload])
    assert IMAGE_MARKER not in running.prompt.text and running.prompt.images == []


def test_branch_export_and_import_keep_the_files(service, tmp_path):
    upload = service.read_upload("facts.md", b"# Facts\n\nThe sky is green on Mars-2.")
    chat = service.store.new("Assistant")
    run(service, chat, "Read this.", uploads=[upload])
    run(service, chat, "And again.")
    store = service.store
    branch = store.branch(chat, 2)
    [record] = branch.messages[0].attachments
    assert store.files("Assistant", branch.id).path(record).read_bytes() == upload.data
    # Deleting the original chat leaves the branch's copy.
    store.delete("Assistant", chat.id)
    assert not store.files("Assistant", chat.id).folder.exists()
    running, _ = run(service, store.load("Assistant", branch.id), "What colour is the sky?")
    assert "The sky is green on Mars-2." in running.prompt.text
    # Export as a zip with the files, import it as a new chat: the attachment comes along.
    path = export_chat(
        store.load("Assistant", branch.id),
        tmp_path,
        "zip",
        character_name="Assistant",
        user_name="User",
        files=store.files("Assistant", branch.id),
    )
    names = zipfile.ZipFile(path).namelist()
    assert "chat.json" in names and f"files/{record.file}" in names
    imported = store.import_file("Assistant", path.read_bytes())
    assert store.files("Assistant", imported.id).path(imported.messages[0].attachments[0]).read_bytes() == upload.data
    assert "attached: facts.md" in chat_markdown(imported, "Assistant", "User")
