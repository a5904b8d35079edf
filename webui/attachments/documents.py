"""The text of a document a user attaches: plain text, Markdown, code, CSV, JSON, PDF, Word, HTML.

The type comes from the file name's extension, and the bytes must agree with it: a ``.docx`` is a
zip holding ``word/document.xml``, a PDF starts with ``%PDF-``, a text file is UTF-8 without NUL
bytes. A file that does not agree is refused with a message saying what it really is and what
to do, rather than read as something it is not (a PNG read as text is noise to a model).

Everything is bounded before the expensive step: the upload's size, a PDF's page count, a
DOCX's declared uncompressed size and entry count (checked in the zip directory before
python-docx opens it; Python's zip reader never inflates an entry past its declared size),
and the text kept (``max_chars``; extraction stops there and the document says it was
truncated). Nothing touches the filesystem: files are read from memory.
"""

from __future__ import annotations

import codecs
import io
import json
import re
import time
import zipfile
from html.parser import HTMLParser
from typing import Any

from webui.attachments.types import Document
from webui.errors import AttachmentError

#: Largest upload read as a document.
MAX_DOCUMENT_BYTES = 32 * 2**20
#: Text kept from one document (about 500k tokens: more than any local model's context).
MAX_DOCUMENT_CHARS = 2_000_000
#: Longest PDF read: more pages are refused (split the file) rather than read for minutes.
MAX_PDF_PAGES = 500
#: Time budget for a PDF's text extraction; a hostile file that is slow to parse page after
#: page is refused when it runs out (checked between pages).
MAX_PDF_SECONDS = 60.0
#: A DOCX's declared uncompressed size (all entries) and entry count: a zip bomb is refused
#: from the zip directory alone, before anything is inflated.
MAX_DOCX_UNCOMPRESSED = 100 * 2**20
MAX_DOCX_ENTRIES = 5000
#: The XML parts (which python-docx parses into trees several times their size) in that total.
MAX_DOCX_XML_BYTES = 32 * 2**20

_KINDS: dict[str, tuple[str, ...]] = {
    "text": (".txt", ".text", ".log", ".rst", ".adoc", ".org"),
    "markdown": (".md", ".markdown"),
    "csv": (".csv", ".tsv"),
    "json": (".json", ".jsonl", ".ndjson"),
    "pdf": (".pdf",),
    "docx": (".docx",),
    "html": (".html", ".htm"),
    "code": (
        # programming languages
        ".py", ".pyi", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".c", ".h", ".cc", ".cpp", ".cxx",
        ".hpp", ".hh", ".hxx", ".cu", ".cs", ".java", ".kt", ".kts", ".scala", ".groovy", ".go", ".rs",
        ".rb", ".php", ".pl", ".pm", ".lua", ".r", ".jl", ".swift", ".m", ".mm", ".dart", ".ex", ".exs",
        ".erl", ".hs", ".ml", ".mli", ".fs", ".clj", ".lisp", ".el", ".scm", ".zig", ".nim", ".vb",
        ".pas", ".f90", ".asm", ".s", ".sol", ".glsl", ".wgsl", ".vue", ".svelte",
        # shells and build files
        ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".cmd", ".mk", ".cmake", ".gradle",
        # queries, data and configuration
        ".sql", ".graphql", ".gql", ".proto", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf",
        ".properties", ".xml", ".tf", ".hcl", ".jinja", ".j2", ".tex", ".bib",
        # styles and changes
        ".css", ".scss", ".sass", ".less", ".diff", ".patch",
    ),
}  # fmt: skip
#: Files read as code by their whole name (they have no extension).
DOCUMENT_FILE_NAMES = (
    "makefile", "dockerfile", "containerfile", "jenkinsfile", "gemfile", "rakefile", "procfile", "vagrantfile",
)  # fmt: skip
_KIND_OF: dict[str, str] = {ext: kind for kind, exts in _KINDS.items() for ext in exts}
#: Every extension read as a document (with its dot, lower case).
DOCUMENT_EXTENSIONS: tuple[str, ...] = tuple(sorted(_KIND_OF))

#: Extensions of picture files (read as images by a chat message; a document reader says so).
PICTURE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .jfif .webp .gif .bmp .tif .tiff .heic .heif .avif .ico .jxl .psd".split()
)
#: Common files we do not read, and what to do instead.
_CONVERT_HINTS = {
    **dict.fromkeys((".doc", ".rtf", ".odt", ".pages", ".wpd"), "save it as .docx or PDF"),
    **dict.fromkeys((".xls", ".xlsx", ".ods", ".numbers"), "export the sheet as CSV"),
    **dict.fromkeys((".ppt", ".pptx", ".odp", ".key"), "export it as PDF"),
    **dict.fromkeys((".epub", ".mobi"), "convert it to PDF or plain text"),
}
#: Leading bytes of binary formats, to name what a misnamed file really is.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF file"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (or a password-protected one)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "a program (ELF)"),
    (b"MZ", "a Windows program"),
)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def read_document(
    name: str,
    data: bytes,
    *,
    max_chars: int = MAX_DOCUMENT_CHARS,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    max_pages: int = MAX_PDF_PAGES,
) -> Document:
    """The text of the file ``name`` with contents ``data``, or AttachmentError saying why not.

    ``name`` picks the type (its extension); the bytes must agree. Text past ``max_chars`` is
    dropped and the Document says so (``truncated``).
    """
    label = display_name(name)
    ext = _extension(label)
    kind = _KIND_OF.get(ext) or ("code" if ext in DOCUMENT_FILE_NAMES else None)
    if kind is None:
        raise AttachmentError(_unsupported_message(label, ext))
    if not data:
        raise AttachmentError(f"{label} is empty (0 bytes): there is nothing to read.")
    if len(data) > max_bytes:
        raise AttachmentError(
            f"{label} is {_mb(len(data))}; documents can be at most {_mb(max_bytes)}. "
            "Attach a smaller file, or only the part you need."
        )
    pages: int | None = None
    if kind == "pdf":
        text, truncated, pages = _pdf_text(label, data, max_chars, max_pages)
    elif kind == "docx":
        text, truncated = _docx_text(label, data, max_chars)
    else:
        raw = _decode_text(label, data)
        if kind == "html":
            text, truncated = _html_text(raw, max_chars)
        else:
            if kind == "json" and len(raw) <= max_chars:
                # Checked only when kept whole: a cut JSON cannot parse, and parsing 32 MB of
                # small values costs far more memory than the text itself.
                _check_json(label, raw, lines=ext != ".json")
            text, truncated = raw, False
    text = normalise_text(text)
    if len(text) > max_chars:
        text, truncated = text[:max_chars].rstrip(), True
    if not text.strip():
        raise AttachmentError(f"{label} has no text in it (only blank space): there is nothing to read.")
    return Document(name=label, kind=kind, text=text, pages=pages, truncated=truncated)


def display_name(name: str) -> str:
    """The file's own name without any folder (browsers may send ``C:\\fakepath\\x.pdf``)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base or "the file"


def normalise_text(text: str) -> str:
    """One line ending (``\\n``), no trailing blanks, no control characters, at most 2 blank lines in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_CHARS.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{4,}", "\n\n\n", text).strip("\n")


def _extension(label: str) -> str:
    base = label.lower()
    if base in DOCUMENT_FILE_NAMES:
        return base
    dot = base.rfind(".")
    return base[dot:] if dot > 0 else ""


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n < 10 * 2**20 else f"{n / 2**20:.0f} MB"


def _supported_list() -> str:
    groups = [
        ("PDF", _KINDS["pdf"]),
        ("Word", _KINDS["docx"]),
        ("web pages", _KINDS["html"]),
        ("text", _KINDS["text"] + _KINDS["markdown"]),
        ("data", _KINDS["csv"] + _KINDS["json"]),
        ("code and configuration", tuple(sorted(_KINDS["code"]))),
    ]
    listed = "; ".join(f"{title} ({', '.join(exts)})" for title, exts in groups)
    return f"{listed}; and files named {', '.join(n.capitalize() for n in DOCUMENT_FILE_NAMES)}"


def _unsupported_message(label: str, ext: str) -> str:
    if ext in (".svg", ".svgz"):
        return f"{label} is an SVG image, which is not supported: convert it to PNG and attach it as an image."
    if ext in PICTURE_EXTENSIONS:
        return (
            f"{label} is an image: attach it as an image (not as a document) so that a model "
            "that can see images reads it."
        )
    if ext in _CONVERT_HINTS:
        return f"{label}: {ext} files are not supported; {_CONVERT_HINTS[ext]} and attach that."
    what = f"the file type {ext!r}" if ext else "a file without an extension"
    return f"{label}: {what} is not supported. Supported documents: {_supported_list()}."


def _sniff(data: bytes) -> str | None:
    """What a binary file is, from its first bytes (None: not one we know)."""
    for signature, what in _SIGNATURES:
        if data.startswith(signature):
            return what
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image"
    return None


# ----- text -----------------------------------------------------------------------------------
def _decode_text(label: str, data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise AttachmentError(f"{label} is UTF-16 (or UTF-32) text: save it as UTF-8 and attach it again.")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if b"\x00" in data:
        _refuse_binary(label, data)
        raise AttachmentError(
            f"{label} contains NUL bytes, so it is a binary file, not text. "
            "Attach the text itself (or the document in a supported format)."
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _refuse_binary(label, data)
        raise AttachmentError(
            f"{label} is not UTF-8 text (byte 0x{data[exc.start]:02X} at offset {exc.start} is not valid UTF-8). "
            "Save it as UTF-8 in your editor and attach it again."
        ) from None


def _refuse_binary(label: str, data: bytes) -> None:
    """Name what a file that is not text really is, when its first bytes tell (only asked once it is not text)."""
    what = _sniff(data)
    if what is not None:
        hint = " Attach it as an image." if what.endswith("image") else ""
        raise AttachmentError(f"{label} is {what}, not a text file (its name says otherwise).{hint}")


def _check_json(label: str, text: str, *, lines: bool) -> None:
    chunks = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()] if lines else [(1, text)]
    for first_line, chunk in chunks:
        try:
            json.loads(chunk)
        except json.JSONDecodeError as exc:
            where = f"line {first_line}" if lines else f"line {exc.lineno} column {exc.colno}"
            raise AttachmentError(
                f"{label} is not valid JSON ({where}: {exc.msg}). Fix it, or attach it as .txt to send it as it is."
            ) from None
        except RecursionError:
            return  # nested deeper than Python's parser goes: still JSON, kept as text


class _TextSink:
    """Collects text up to a limit (a little past it: the caller cuts exactly after normalising)."""

    def __init__(self, max_chars: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.max_chars = max_chars
        self.full = False

    def add(self, text: str) -> None:
        if self.full or not text:
            return
        self.parts.append(text)
        self.size += len(text)
        if self.size > self.max_chars:
            self.full = True

    def text(self, sep: str = "") -> str:
        return sep.join(self.parts)


# ----- HTML -----------------------------------------------------------------------------------
#: Elements whose content is not text a reader sees.
_HTML_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math", "canvas", "iframe", "object"})
_HTML_BLOCKS = frozenset(
    "address article aside blockquote body br dd details div dl dt fieldset figcaption figure footer form "
    "h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody thead tfoot title tr ul".split()
)


class _HTMLText(HTMLParser):
    """The visible text of a page: scripts and styles dropped, blocks on their own lines."""

    def __init__(self, sink: _TextSink) -> None:
        super().__init__(convert_charrefs=True)
        self.sink = sink
        self.skipping = 0
        self.pre = 0
        self.cells = 0
        self.last = "\n"

    def _emit(self, text: str) -> None:
        if self.last == "\n":
            text = text.lstrip(" ")
        if text:
            self.sink.add(text)
            self.last = text[-1]

    def _newline(self) -> None:
        if self.last != "\n":
            self._emit("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HTML_SKIP:
            self.skipping += 1
        elif self.skipping:
            return
        elif tag in _HTML_BLOCKS:
            self._newline()
            if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
                self._emit("#" * int(tag[1]) + " ")
            elif tag == "li":
                self._emit("- ")
            elif tag == "tr":
                self.cells = 0
            elif tag == "pre":
                self.pre += 1
        elif tag in ("td", "th"):
            if self.cells:
                self._emit(" | ")
            self.cells += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self.skipping and tag in _HTML_BLOCKS:
            self._newline()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HTML_SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif not self.skipping and tag in _HTML_BLOCKS:
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self._newline()

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.pre:
            self.sink.add(data)
            self.last = data[-1:] or self.last
        else:
            self._emit(re.sub(r"\s+", " ", data))


def _html_text(raw: str, max_chars: int) -> tuple[str, bool]:
    sink = _TextSink(max_chars)
    parser = _HTMLText(sink)
    step = 64 * 1024
    for start in range(0, len(raw), step):
        parser.feed(raw[start : start + step])
        if sink.full:
            return sink.text(), True
    parser.close()
    return sink.text(), sink.full


# ----- PDF ------------------------------------------------------------------------------------
def _pdf_text(label: str, data: bytes, max_chars: int, max_pages: int) -> tuple[str, bool, int]:
    if b"%PDF-" not in data[:1024]:
        what = _sniff(data)
        raise AttachmentError(
            f"{label} is not a PDF file" + (f" (it is {what})" if what else " (it does not start with %PDF)") + "."
        )
    from pypdf import PdfReader, apply_configuration
    from pypdf.errors import DependencyError, FileNotDecryptedError

    corrupt = f"{label} could not be read as a PDF: the file is damaged or not a valid PDF"
    deadline = time.monotonic() + MAX_PDF_SECONDS
    sink = _TextSink(max_chars)
    # pypdf runs jbig2dec (a program) for some images; text extraction never needs it.
    with apply_configuration(jbig2dec_binary=None):
        try:
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted and reader.decrypt("") == 0:  # PasswordType.NOT_DECRYPTED
                raise AttachmentError(_pdf_password_message(label))
            declared = _declared_page_count(reader)
            if declared is not None and declared > max_pages:
                raise AttachmentError(_pdf_pages_message(label, declared, max_pages))
            count = len(reader.pages)
            if count > max_pages:
                raise AttachmentError(_pdf_pages_message(label, count, max_pages))
            read = 0
            for page in reader.pages:
                if time.monotonic() > deadline:
                    raise AttachmentError(
                        f"Reading the text of {label} took longer than {MAX_PDF_SECONDS:g} s (at page {read + 1} "
                        f"of {count}); the file is unusually slow to parse. Save it again as PDF "
                        "(e.g. print to PDF) or attach the text itself."
                    )
                sink.add(page.extract_text())
                sink.add("\n\n")
                read += 1
                if sink.full:
                    break
        except AttachmentError:
            raise
        except FileNotDecryptedError:
            raise AttachmentError(_pdf_password_message(label)) from None
        except DependencyError as exc:
            raise AttachmentError(f"{label} is encrypted in a way this app cannot open ({exc}).") from None
        except RecursionError:
            raise AttachmentError(f"{corrupt} (its objects are nested too deeply).") from None
        except Exception as exc:  # noqa: BLE001 - pypdf raises almost anything on hostile input
            raise AttachmentError(f"{corrupt} ({type(exc).__name__}: {exc}).") from None
    if not sink.text().strip():
        raise AttachmentError(
            f"No text found in {label}: it may be a scanned image; this app reads the text layer of a PDF, "
            "not pictures of text. Run it through OCR first (for example ocrmypdf), or attach its pages as "
            "images to a model that can see images."
        )
    return sink.text(), read < count, count


def _declared_page_count(reader: Any) -> int | None:
    """The page tree's own /Count (cheap to read; may lie, so the real count is checked too)."""
    count = reader.root_object["/Pages"].get_object().get("/Count")
    return int(count) if isinstance(count, int) else None


def _pdf_password_message(label: str) -> str:
    return (
        f"{label} is protected by a password: open it, save a copy without the password "
        "(e.g. print to PDF), and attach that."
    )


def _pdf_pages_message(label: str, pages: int, limit: int) -> str:
    return (
        f"{label} has {pages} pages; this app reads at most {limit} pages of a PDF. "
        "Split it and attach the pages you need."
    )


# ----- DOCX -----------------------------------------------------------------------------------
def _check_docx_zip(label: str, data: bytes) -> None:
    """Refuse what is not a Word document, or would inflate too much, from the zip directory alone."""
    if not data.startswith(b"PK\x03\x04"):
        what = _sniff(data)
        if what is not None and what.startswith("an old Microsoft Office"):
            raise AttachmentError(
                f"{label} is an old Word 97-2003 document renamed .docx, or a password-protected one: "
                "open it in Word (removing the password), save it as .docx, and attach that."
            )
        raise AttachmentError(
            f"{label} is not a Word document" + (f" (it is {what})" if what else " (a .docx is a zip file)") + "."
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise AttachmentError(f"{label} is damaged: its zip structure cannot be read ({exc}).") from None
    with archive:
        entries = archive.infolist()
        names = {info.filename for info in entries}
    if len(entries) > MAX_DOCX_ENTRIES:
        raise AttachmentError(
            f"{label} holds {len(entries)} files; a Word document this app reads holds at most {MAX_DOCX_ENTRIES}."
        )
    total = sum(info.file_size for info in entries)
    xml = sum(info.file_size for info in entries if info.filename.endswith((".xml", ".rels")))
    if total > MAX_DOCX_UNCOMPRESSED or xml > MAX_DOCX_XML_BYTES:
        raise AttachmentError(
            f"{label} unpacks to {_mb(total)} ({_mb(xml)} of it XML); this app reads Word documents up to "
            f"{_mb(MAX_DOCX_UNCOMPRESSED)} unpacked ({_mb(MAX_DOCX_XML_BYTES)} of XML). Remove large "
            "pictures or split the document."
        )
    if "word/document.xml" not in names:
        if "xl/workbook.xml" in names:
            what = "an Excel workbook: export the sheet as CSV"
        elif "ppt/presentation.xml" in names:
            what = "a PowerPoint presentation: export it as PDF"
        else:
            what = "a zip archive without word/document.xml: attach the files inside it instead"
        raise AttachmentError(f"{label} is not a Word document; it is {what}.")


def _docx_text(label: str, data: bytes, max_chars: int) -> tuple[str, bool]:
    _check_docx_zip(label, data)
    import docx
    from docx.table import Table

    sink = _TextSink(max_chars)
    try:
        document = docx.Document(io.BytesIO(data))
        for block in document.iter_inner_content():
            sink.add(_docx_table(block) if isinstance(block, Table) else _docx_paragraph(block))
            sink.add("\n")
            if sink.full:
                break
    except RecursionError:
        raise AttachmentError(f"{label} is damaged: its XML is nested too deeply.") from None
    except Exception as exc:  # noqa: BLE001 - python-docx/lxml/zipfile raise many kinds on a broken file
        raise AttachmentError(
            f"{label} is damaged and cannot be read as a Word document ({type(exc).__name__}: {exc}). "
            "Open it in Word, save it again, and attach the new file."
        ) from None
    return sink.text(), sink.full


def _docx_paragraph(paragraph: Any) -> str:
    text: str = paragraph.text
    style = paragraph.style.name if paragraph.style is not None else ""
    if not text.strip():
        return ""
    level = style.removeprefix("Heading ")
    if level.isdigit() and 1 <= int(level) <= 6:
        return "#" * int(level) + " " + text
    if style == "Title":
        return "# " + text
    if style.startswith("List"):
        return "- " + text
    return text


def _docx_table(table: Any) -> str:
    """A table as Markdown rows (the first row as its header); merged cells appear once."""
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a horizontally merged cell repeats; show it once
                continue
            previous = cell._tc
            cells.append(" ".join(cell.text.split()).replace("|", "\\|"))
        rows.append("| " + " | ".join(cells) + " |")
        if len(rows) == 1:
            rows.append("|" + " --- |" * len(cells))
    return "\n".join(rows)
