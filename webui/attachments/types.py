"""What an attachment becomes once it is checked: a document's text or an image's pixels."""

from __future__ import annotations

from dataclasses import dataclass

#: Where an image goes in a rendered prompt, one per image in order. It is llama.cpp's
#: ``mtmd_default_marker()``; loaders with ``Capabilities.images`` replace it with what their
#: model needs (llama.cpp's libmtmd takes it as it is; transformers uses its processor's token).
IMAGE_MARKER = "<__media__>"


@dataclass(frozen=True)
class ImageInput:
    """An image checked and ready for a model: PNG, JPEG or WebP bytes within the size limits."""

    data: bytes
    #: ``image/png``, ``image/jpeg`` or ``image/webp`` (from the bytes, never from a file name).
    mime: str
    width: int
    height: int
    name: str = ""

    def data_url(self) -> str:
        import base64

        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(frozen=True)
class Document:
    """A document's text, extracted from a file."""

    name: str
    #: ``text``, ``markdown``, ``code``, ``csv``, ``json``, ``pdf``, ``docx`` or ``html``.
    kind: str
    text: str
    #: Pages (PDF) or None where a format has none.
    pages: int | None = None
    #: The text stopped at the size limit: the rest of the file is not in ``text`` (say so to the user).
    truncated: bool = False
