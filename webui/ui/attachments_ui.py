"""The Chat tab's attachments: the paper clip, the chips of the files waiting to be sent, and how a sent
message shows its files.

Thin over the chat service: ``read_upload`` checks and reads a file the moment it is attached (so an
unreadable file is refused at once, with the reason, and the others stay), ``upload_tokens`` counts it
for the context meter, and ``turn(..., uploads=...)`` stores the files with the message when it is sent.
Until then they wait in the page's session (:class:`Pending` in a ``gr.State``), shown as chips above
the message box, each with its ✕.

Files come in three ways, all through the one upload button (so one handler reads them all): its file
picker, a drop onto the chat box or the message box, and a paste of an image into the message box (the
page's JS puts the files into the button's file input, as if picked).

A sent message shows an image as the image itself and a document as a chip (name, pages, tokens) whose
name is a link to the stored copy. Gradio serves files from its cache folder only: :class:`ServedFiles`
copies a stored file there once (under a name that cannot be guessed), so nothing else of the user-data
folder is exposed and Gradio does not hash the file again on every streamed frame.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gradio as gr
from gradio.utils import get_upload_folder

from webui.chat.attachments import ACCEPTED_EXTENSIONS, Attachment, Upload
from webui.chat.history import Chat, Message
from webui.errors import WebUIError
from webui.services import Services
from webui.storage import safe_name
from webui.ui.common import error_text, warn
from webui.ui.i18n import page_language, t, tr

#: Starts the context meter's line about the files waiting to be sent (an HTML comment: not shown).
ATTACH_MARK = "<!--attachments-->"
#: The chat service's error key for files that do not fit (the chips offer "Send only what fits").
TOO_BIG_KEY = "attach.too_big"
#: Marks a sent document's chip in the chat box (before its name).
CLIP = "📎"

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~])")


@dataclass(frozen=True)
class Pending:
    """A file attached to the message being written, read and counted, not sent yet."""

    id: str
    upload: Upload
    #: Tokens it takes with the model loaded when it was attached (None: no model, or an image it cannot see).
    tokens: int | None
    #: An image the loaded model cannot see (sending it is refused; the chip says so).
    blind: bool = False


def number(n: int, lang: str) -> str:
    """A count as people of ``lang`` write it (5,300 / 5 300)."""
    text = f"{n:,}"
    return text.replace(",", "\u00a0") if lang == "ru" else text


def chip_text(
    name: str,
    *,
    pages: int | None,
    size: tuple[int, int] | None,
    tokens: int | None,
    lang: str,
    notes: tuple[str, ...] = (),
) -> str:
    """What a chip says: "report.pdf · 2 pages · 340 tokens", "cat.png · 640×480 · 260 tokens"."""
    parts = [name]
    if pages is not None:
        parts.append(tr("attach.pages_one", lang) if pages == 1 else tr("attach.pages", lang, n=number(pages, lang)))
    if size is not None:
        parts.append(f"{size[0]}×{size[1]}")
    if tokens is not None:
        parts.append(tr("attach.tokens", lang, n=number(tokens, lang)))
    return " · ".join([*parts, *notes])


def pending_text(item: Pending, lang: str) -> str:
    upload = item.upload
    notes: list[str] = []
    if upload.document is not None and upload.document.truncated:
        notes.append(tr("attach.truncated", lang))
    if item.blind:
        notes.append("⚠ " + tr("attach.blind_mark", lang))
    return chip_text(
        upload.name,
        pages=upload.document.pages if upload.document is not None else None,
        size=(upload.image.width, upload.image.height) if upload.image is not None else None,
        tokens=item.tokens,
        lang=lang,
        notes=tuple(notes),
    )


def sent_text(attachment: Attachment, lang: str) -> str:
    """A sent file's chip text (as it was counted when it was sent)."""
    size = (attachment.width, attachment.height) if attachment.width and attachment.height else None
    notes = (tr("attach.trimmed", lang),) if attachment.kept_chars is not None else ()
    return chip_text(
        attachment.name, pages=attachment.pages, size=size, tokens=attachment.tokens, lang=lang, notes=notes
    )


def chips_value(pending: list[Pending], lang: str) -> list[dict[str, Any]]:
    """The chips component's value: what the page's JS draws (as text: a file name is never HTML)."""
    return [
        {
            "id": item.id,
            "text": pending_text(item, lang),
            "label": tr("attach.remove", lang, name=item.upload.name),
            "warn": item.blind,
        }
        for item in pending
    ]


def meter_line(pending: list[Pending], n_ctx: int | None, lang: str) -> str:
    """The context meter's line about the files waiting to be sent ("" for none)."""
    if not pending:
        return ""
    if n_ctx is None:
        return tr("attach.meter_uncounted", lang, files=len(pending))
    # an image the loaded model cannot see has no count (its chip says it will be refused)
    total = sum(item.tokens or 0 for item in pending)
    line = tr("attach.meter", lang, files=len(pending), tokens=number(total, lang), n_ctx=number(n_ctx, lang))
    blind = sum(1 for item in pending if item.blind)
    if blind:
        line += " " + tr("attach.meter_blind", lang, n=blind)
    # The reply needs room too (up to half the context is kept for it): warn before the refusal does.
    return line + (" " + tr("attach.meter_over", lang) if total > n_ctx // 2 else "")


def with_line(meter: str | None, line: str) -> str:
    """The meter's text with its attachments line replaced by ``line`` (none when empty)."""
    base = (meter or "").split(ATTACH_MARK)[0].rstrip()
    if not line:
        return base
    return f"{base}\n\n{ATTACH_MARK}{line}" if base else ATTACH_MARK + line


def markdown_text(text: str) -> str:
    """``text`` as Markdown that shows it as it is (a file name is not markup)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


class ServedFiles:
    """Stored attachment copies as files Gradio serves: a copy in Gradio's cache folder, made once.

    The copy's folder is named by an HMAC of the stored file's path, size and time with a key made at
    start, so its URL cannot be guessed from the chat; its file name is the user's (the name a download
    gets). A copy gone from the cache (Gradio clears it) is made again.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()

    def path(self, chat: Chat, attachment: Attachment) -> str | None:
        """The served copy of ``attachment`` (None: its stored copy is missing)."""
        try:
            source = Path(self.services.chat_service.attachment_path(chat, attachment))
            stat = source.stat()
        except (OSError, WebUIError):
            return None
        stamp = f"{source}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
        folder = hmac.new(self._key, stamp, hashlib.sha256).hexdigest()[:40]
        try:  # the user's name, with the stored copy's type (an image is stored re-encoded: PNG or JPEG)
            name = safe_name(Path(attachment.name).stem + source.suffix, what="file name")
        except WebUIError:
            name = source.name
        target = Path(get_upload_folder()) / "attachments" / folder / name
        if target.is_file():
            return str(target)
        with self._lock:
            if not target.is_file():
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    part = target.with_name(f".{secrets.token_hex(4)}.part")
                    shutil.copyfile(source, part)
                    os.replace(part, target)
                except OSError:
                    return None
        return str(target)

    def url(self, path: str) -> str:
        """The page-relative URL Gradio serves ``path`` at (relative: it works under a proxy's prefix too)."""
        return "gradio_api/file=" + quote(path)


def attachment_entries(
    chat: Chat, message: Message, lang: str, files: ServedFiles | None = None
) -> Iterator[dict[str, Any]]:
    """A sent message's files as chat box entries, one each: an image as the image, a document as a chip
    whose name links to its stored copy. Without ``files`` (or when a copy is missing) only the chip text."""
    for attachment in message.attachments:
        text = sent_text(attachment, lang)
        path = files.path(chat, attachment) if files is not None else None
        if path is not None and attachment.kind == "image":
            yield {"role": message.role, "content": {"path": path, "alt_text": text}}
            continue
        if files is not None and path is not None:
            rest = text[len(attachment.name) :]
            chip = f"[{markdown_text(attachment.name)}]({files.url(path)}){markdown_text(rest)}"
        else:
            missing = tr("attach.missing", lang) if files is not None else ""
            chip = markdown_text(text + (f" · ⚠ {missing}" if missing else ""))
        yield {"role": message.role, "content": f"{CLIP} {chip}"}


# --- the page's side ----------------------------------------------------------------------------
#: Chips drawn from the component's value with DOM text (never as HTML), each with its ✕ button; and,
#: once per page, the paste and drop handlers that hand files to the upload button's file input.
CHIPS_JS = """
const render = () => {
  const box = element.querySelector('.att-chips');
  if (!box) return;
  box.replaceChildren(...(props.value || []).map((c) => {
    const chip = document.createElement('span');
    chip.className = 'att-chip' + (c.warn ? ' att-warn' : '');
    chip.setAttribute('role', 'listitem');
    const text = document.createElement('span');
    text.className = 'att-text';
    text.textContent = c.text;
    text.title = c.text;
    const x = document.createElement('button');
    x.type = 'button';
    x.className = 'att-x';
    x.textContent = '✕';
    x.title = c.label;
    x.setAttribute('aria-label', c.label);
    x.dataset.id = c.id;
    chip.append(text, x);
    return chip;
  }));
};
render();
watch('value', render);
element.addEventListener('click', (e) => {
  const x = e.target.closest && e.target.closest('.att-x');
  if (x) trigger('discard', { id: x.dataset.id });
});
if (!window.webuiAttachments) {
  window.webuiAttachments = true;
  const input = () => document.querySelector('#chat-attach-box input[type=file]');
  const put = (files) => {
    const target = input();
    if (!target || !files.length) return;
    const dt = new DataTransfer();
    files.forEach((f) => dt.items.add(f));
    target.files = dt.files;
    target.dispatchEvent(new Event('change', { bubbles: true }));
  };
  // The picker offers the files the app reads; a drop or a paste may bring others (refused one by one).
  document.addEventListener('click', (e) => {
    if (e.target.closest && e.target.closest('#chat-attach')) input()?.setAttribute('accept', props.accept);
  }, true);
  document.addEventListener('paste', (e) => {
    if (!(e.target.closest && e.target.closest('#chat-input'))) return;
    const data = e.clipboardData;
    const files = data ? [...data.files] : [];
    // Text wins when the clipboard holds both (a cell copied from a spreadsheet comes with its picture).
    if (!files.length || (data.getData('text/plain') || '').trim()) return;
    e.preventDefault();
    put(files);
  });
  const zone = (node) => node && node.closest && node.closest('#chat-box, #chat-input, #chat-attachments-row');
  const hasFiles = (e) => [...((e.dataTransfer && e.dataTransfer.types) || [])].includes('Files');
  const mark = (on) => document.querySelectorAll('#chat-box, #chat-input').forEach((el) => el.classList.toggle('att-dragging', on));
  document.addEventListener('dragover', (e) => {
    if (!hasFiles(e) || !zone(e.target)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
    mark(true);
  });
  document.addEventListener('dragleave', (e) => { if (!zone(e.relatedTarget)) mark(false); });
  document.addEventListener('drop', (e) => {
    mark(false);
    if (!hasFiles(e) || !zone(e.target)) return;
    e.preventDefault();
    put([...e.dataTransfer.files]);
  });
}
"""

CHIPS_CSS = """
.att-chips { display: flex; flex-wrap: wrap; gap: 6px; }
.att-chips:empty { display: none; }
.att-chip { display: inline-flex; align-items: center; gap: 2px; max-width: 100%;
  border: 1px solid var(--border-color-primary); border-radius: 999px; padding: 2px 2px 2px 10px;
  background: var(--background-fill-secondary); font-size: var(--text-sm); }
.att-text { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.att-chip.att-warn { border-color: var(--color-accent); background: var(--color-accent-soft); }
.att-x { border: none; background: transparent; cursor: pointer; padding: 0 6px; border-radius: 999px;
  line-height: 1.5; color: var(--body-text-color-subdued); }
.att-x:hover, .att-x:focus-visible { background: var(--border-color-primary); color: var(--body-text-color); }
"""

# Feather's "paperclip" icon (MIT), drawn in the button's text colour.
_CLIP_SVG = (
    "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' stroke='black' stroke-width='2' "
    "stroke-linecap='round' stroke-linejoin='round'><path d='M21.44 11.05l-9.19 9.19a6 6 0 0 1-8.49-8.49l9.19-9.19"
    "a4 4 0 0 1 5.66 5.66l-9.2 9.19a2 2 0 0 1-2.83-2.83l8.49-8.48'/></svg>"
)
#: Page-wide rules (the chips' own are scoped to them): the paper clip, the drop target, sent images' size.
PAGE_CSS = f"""
<style>
#chat-attach::before {{ content: ""; display: inline-block; width: 1.1em; height: 1.1em; margin-right: 4px;
  vertical-align: -0.2em; background: currentColor;
  -webkit-mask: url("data:image/svg+xml,{quote(_CLIP_SVG)}") center / contain no-repeat;
  mask: url("data:image/svg+xml,{quote(_CLIP_SVG)}") center / contain no-repeat; }}
#chat-box.att-dragging, #chat-input.att-dragging {{ outline: 2px dashed var(--color-accent); outline-offset: -2px; }}
#chat-box .message-content img, #chat-box .message img {{ max-height: 240px; max-width: min(320px, 100%);
  object-fit: contain; }}
#chat-attach-fit.att-offer {{ outline: 2px solid var(--color-accent); border-radius: var(--radius-md); }}
</style>
"""


class AttachmentsPanel:
    """The paper clip, the chips and "Send only what fits" above the message box (:meth:`build`);
    :meth:`wire` once the tab is built. The Chat tab's turn reads :attr:`pending` and :attr:`fit`, and
    sets :attr:`outputs` (see :meth:`values`)."""

    def __init__(self, services: Services) -> None:
        self.services = services

    # --- layout -----------------------------------------------------------------------------------
    def build(self) -> None:
        """One row above the message box: the paper clip, the chips, and "Send only what fits" (shown
        while files wait)."""
        with gr.Row(elem_id="chat-attachments-row", equal_height=False):
            with gr.Column(elem_id="chat-attach-box", scale=0, min_width=100):
                self.button = gr.UploadButton(
                    t("attach.button"), file_count="multiple", type="filepath", elem_id="chat-attach", size="sm"
                )
            self.chips = gr.HTML(
                [],
                html_template='<div class="att-chips" role="list"></div>',
                css_template=CHIPS_CSS,
                js_on_load=CHIPS_JS,
                head=PAGE_CSS,
                elem_id="chat-attachments",
                padding=False,
                container=False,
                scale=4,
                accept=",".join(ACCEPTED_EXTENSIONS),
            )
            self.fit = gr.Checkbox(
                value=False,
                label=t("attach.fit"),
                elem_id="chat-attach-fit",
                visible=False,
                scale=0,
                min_width=220,
                container=False,
            )
        #: The files waiting to be sent with the next message (a list of :class:`Pending`).
        self.pending = gr.State([])

    @property
    def outputs(self) -> list[Any]:
        """What :meth:`values` fills in: the pending files, their chips, the "Send only what fits" box."""
        return [self.pending, self.chips, self.fit]

    # --- values -----------------------------------------------------------------------------------
    def values(self, pending: list[Pending], lang: str, *, offer: bool = False, reset: bool = False) -> list[Any]:
        """:attr:`outputs` showing ``pending``; ``offer``: point at "Send only what fits" (a refusal for
        size); ``reset``: untick it (after a send: each message is refused whole unless asked)."""
        fit: dict[str, Any] = {"visible": bool(pending), "elem_classes": ["att-offer"] if offer else []}
        if reset:
            fit["value"] = False
        return [list(pending), chips_value(pending, lang), gr.update(**fit)]

    def meter(self, meter: str | None, pending: list[Pending], lang: str) -> str:
        """The context meter's text with the line about ``pending`` (replacing the one it had)."""
        loaded = self.services.models.current
        return with_line(meter, meter_line(pending, loaded.backend.n_ctx if loaded else None, lang))

    def uploads(self, pending: list[Pending] | None) -> list[Upload]:
        return [item.upload for item in pending or []]

    def read(self, name: str, data: bytes, lang: str) -> Pending | None:
        """One file read and counted (None, with a warning pop-up saying why, when it cannot be used)."""
        service = self.services.chat_service
        try:
            upload = service.read_upload(name, data)
            tokens = service.upload_tokens(upload)
        except WebUIError as exc:
            warn(error_text(exc, lang), lang)
            return None
        blind = upload.kind == "image" and self.services.models.current is not None and not service.can_see_images()
        return Pending(secrets.token_hex(6), upload, tokens, blind)

    def attach(self, files: list[tuple[str, bytes]], pending: list[Pending], lang: str) -> list[Pending]:
        """``pending`` with ``files`` (name, bytes) added; a file that cannot be used is refused with its
        reason and the others stay. An image the loaded model cannot see is kept, marked, with a notice."""
        added = [item for name, data in files if (item := self.read(name, data, lang)) is not None]
        blind = [item.upload.name for item in added if item.blind]
        if blind:
            warn(tr("attach.blind", lang, name=", ".join(blind)), lang)
        return [*pending, *added]

    def reattach(self, chat: Chat, attachments: list[Attachment], pending: list[Pending], lang: str) -> list[Pending]:
        """The files of a message taken back (Remove last) as chips again, read from their stored copies."""
        files: list[tuple[str, bytes]] = []
        for attachment in attachments:
            try:
                files.append(
                    (attachment.name, Path(self.services.chat_service.attachment_path(chat, attachment)).read_bytes())
                )
            except (OSError, WebUIError):
                warn(f"{attachment.name}: {tr('attach.missing', lang)}", lang)
        return self.attach(files, pending, lang)

    # --- events -----------------------------------------------------------------------------------
    def wire(self, meter: gr.Markdown) -> None:
        def on_upload(paths: list[str] | None, pending: list[Pending] | None, meter_now: str | None) -> list[Any]:
            lang = page_language()
            files: list[tuple[str, bytes]] = []
            for path in paths or []:
                try:
                    files.append((Path(path).name, Path(path).read_bytes()))
                except OSError as exc:
                    warn(f"{Path(path).name}: {exc.strerror or exc}", lang)
            now = self.attach(files, list(pending or []), lang)
            return [*self.values(now, lang), self.meter(meter_now, now, lang)]

        def on_discard(pending: list[Pending] | None, meter_now: str | None, evt: gr.EventData) -> list[Any]:
            lang = page_language()
            gone = getattr(evt, "id", None)
            now = [item for item in pending or [] if item.id != gone]
            return [*self.values(now, lang), self.meter(meter_now, now, lang)]

        self.button.upload(
            on_upload,
            [self.button, self.pending, meter],
            [*self.outputs, meter],
            show_progress="minimal",
            show_progress_on=[self.chips, meter],
        )
        self.chips.discard(
            on_discard, [self.pending, meter], [*self.outputs, meter], queue=False, show_progress="hidden"
        )
