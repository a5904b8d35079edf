"""Files and images attached to chat messages: checked uploads, stored copies, and prompt text.

An upload is checked and read once (:func:`read_upload`): a document becomes its text, an image
its checked pixels. When the message is sent, the original file is copied under the chat's files
folder (``<chat id>.files/`` next to the chat, written atomically) with the document's text beside
it, and the message keeps an :class:`Attachment` record. Every later prompt reads the stored text
and images back, so a chat's attachments survive reloads, restarts, branches and exports.

In the prompt a document is a delimited block before the message text; an image is an
``IMAGE_MARKER`` where the loader puts the picture (see ``webui.attachments.types``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from webui.attachments.documents import DOCUMENT_EXTENSIONS, PICTURE_EXTENSIONS, read_document
from webui.attachments.images import looks_like_image, read_image
from webui.attachments.types import IMAGE_MARKER, Document, ImageInput
from webui.errors import AttachmentError
from webui.storage import atomic_write_bytes, atomic_write_text, safe_name

Kind = Literal["document", "image"]
#: Images a message takes (a GIF as its one still frame; the picker offers these).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".gif")
ACCEPTED_EXTENSIONS: tuple[str, ...] = tuple(sorted({*DOCUMENT_EXTENSIONS, *IMAGE_EXTENSIONS}))
#: Files one message may carry.
MAX_ATTACHMENTS = 16
#: The block a document's text goes in, in the prompt.
DOCUMENT_OPEN = '<document name="{name}">'
DOCUMENT_CLOSE = "</document>"


def fmt_int(n: int) -> str:
    return f"{n:,}"


def document_block(name: str, text: str) -> str:
    """A document's text as the prompt shows it: clearly delimited, named."""
    clean = name.replace('"', "'")
    return f"{DOCUMENT_OPEN.format(name=clean)}\n{text.strip()}\n{DOCUMENT_CLOSE}"


def _pages(pages: int | None) -> str:
    if pages is None:
        return ""
    return "1 page" if pages == 1 else f"{fmt_int(pages)} pages"


def _describe(name: str, kind: Kind, pages: int | None, size: tuple[int, int] | None, tokens: int | None) -> str:
    parts = [name]
    if kind == "document" and pages is not None:
        parts.append(_pages(pages))
    if kind == "image" and size is not None:
        parts.append(f"{size[0]}×{size[1]}")
    if tokens is not None:
        parts.append(f"{fmt_int(tokens)} tokens")
    return " · ".join(parts)


@dataclass(frozen=True)
class Upload:
    """A file checked and read, not yet stored with a chat."""

    name: str
    kind: Kind
    data: bytes
    document: Document | None = None
    image: ImageInput | None = None

    def describe(self, tokens: int | None) -> str:
        size = (self.image.width, self.image.height) if self.image is not None else None
        pages = self.document.pages if self.document is not None else None
        text = _describe(self.name, self.kind, pages, size, tokens)
        return text + (" · cut at the size limit" if self.document is not None and self.document.truncated else "")

    def prompt_text(self) -> str:
        """What the upload adds to the message text (a document block, or an image marker)."""
        if self.document is not None:
            return document_block(self.name, self.document.text)
        return IMAGE_MARKER


def read_upload(name: str, data: bytes) -> Upload:
    """Check and read an uploaded file (a document or an image) or raise ``AttachmentError``."""
    base = Path(name or "file").name
    ext = Path(base).suffix.lower()
    # Any picture goes to the image reader, which reads PNG, JPEG, WebP and GIF and names any other
    # format it is given (a HEIC photo, a BMP) with what to convert it to; so does a misnamed image.
    if ext in PICTURE_EXTENSIONS or looks_like_image(data):
        image = read_image(base, data)
        return Upload(base, "image", image.data, image=image)
    document = read_document(base, data)
    return Upload(base, "document", data, document=document)


@dataclass
class Attachment:
    """A file stored with a message (the record in the chat file; the copy is in the files folder)."""

    #: The stored copy's name in the chat's files folder.
    file: str
    #: The user's file name.
    name: str
    kind: Kind
    mime: str = ""
    size: int = 0
    pages: int | None = None
    #: Tokens counted on the model loaded when it was sent (None: not counted).
    tokens: int | None = None
    width: int | None = None
    height: int | None = None
    #: Only part of a document's text was sent (it did not fit): how many characters of it.
    kept_chars: int | None = None

    def describe(self) -> str:
        size = (self.width, self.height) if self.width and self.height else None
        text = _describe(self.name, self.kind, self.pages, size, self.tokens)
        return text + (" · trimmed" if self.kept_chars is not None else "")

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}

    @classmethod
    def from_json(cls, data: Any) -> Attachment | None:
        """A stored record, or None for one that is not (a hand-edited file)."""
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("file"), str)
            or data.get("kind")
            not in (
                "document",
                "image",
            )
        ):
            return None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except TypeError:
            return None


@dataclass
class Materials:
    """A message's attachments read back for a prompt: the text they add and their images."""

    text: str = ""
    images: list[ImageInput] = field(default_factory=list)


class AttachmentFiles:
    """The files folder of one chat: ``<chats>/<character>/<chat id>.files/``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, attachment: Attachment) -> Path:
        return self.folder / safe_name(attachment.file, what="attachment file")

    def store(self, upload: Upload, *, tokens: int | None, keep_chars: int | None = None) -> Attachment:
        """Copy ``upload`` into the folder (atomic; a file with the same content is written once)."""
        digest = hashlib.sha256(upload.data).hexdigest()[:16]
        stem = safe_name(Path(upload.name).stem or "file", what="file name")[:80]
        suffix = Path(upload.name).suffix.lower()
        if upload.image is not None:
            suffix = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}.get(upload.image.mime, suffix)
        file = f"{digest}-{stem}{suffix}"
        target = self.folder / file
        if not target.exists():
            atomic_write_bytes(target, upload.data)
        record = Attachment(file=file, name=upload.name, kind=upload.kind, size=len(upload.data), tokens=tokens)
        if upload.document is not None:
            text = upload.document.text
            if keep_chars is not None:
                text = text[:keep_chars]
                record.kept_chars = keep_chars
            atomic_write_text(self.folder / f"{file}.txt", text)
            record.pages = upload.document.pages
            record.mime = upload.document.kind
        if upload.image is not None:
            record.mime, record.width, record.height = upload.image.mime, upload.image.width, upload.image.height
        return record

    def materials(self, attachments: Iterable[Attachment]) -> Materials:
        """The prompt text and images of a message's attachments. A missing copy (a chat imported
        without its files) is named in the text instead of failing the turn."""
        blocks: list[str] = []
        images: list[ImageInput] = []
        for a in attachments:
            path = self.path(a)
            if a.kind == "document":
                try:
                    text = (self.folder / f"{a.file}.txt").read_text(encoding="utf-8")
                except OSError:
                    blocks.append(f"[attached file {a.name} is missing from this chat's files]")
                    continue
                blocks.append(document_block(a.name, text))
            else:
                try:
                    data = path.read_bytes()
                except OSError:
                    blocks.append(f"[attached image {a.name} is missing from this chat's files]")
                    continue
                images.append(
                    ImageInput(data, a.mime or "image/png", int(a.width or 0), int(a.height or 0), name=a.name)
                )
                blocks.append(IMAGE_MARKER)
        return Materials("\n\n".join(blocks), images)


def message_text(materials: Materials, text: str) -> str:
    """A user message's prompt text: its attachments first, then what the user typed."""
    if not materials.text:
        return text
    return f"{materials.text}\n\n{text}" if text.strip() else materials.text


def check_count(uploads: list[Upload]) -> None:
    if len(uploads) > MAX_ATTACHMENTS:
        raise AttachmentError(
            f"A message can carry at most {MAX_ATTACHMENTS} files ({len(uploads)} attached).",
            key="attach.too_many",
            n=MAX_ATTACHMENTS,
            got=len(uploads),
        )


def document_of(upload: Upload) -> Document:
    assert upload.document is not None
    return upload.document
