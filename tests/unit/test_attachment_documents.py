"""Documents attached to a message: real files made with real libraries (fpdf2, pypdf, python-docx).

Each supported type is read; each way a file can be wrong (misnamed, corrupt, encrypted, scanned,
a zip bomb, too many pages, not UTF-8...) is refused with a message that says what to do.
"""

from __future__ import annotations

import io
import json
import zipfile

import docx
import pytest
from fpdf import FPDF
from PIL import Image
from pypdf import PdfWriter

from webui.attachments import documents
from webui.attachments.documents import (
    DOCUMENT_EXTENSIONS,
    MAX_DOCX_ENTRIES,
    MAX_DOCX_UNCOMPRESSED,
    MAX_PDF_PAGES,
    normalise_text,
    read_document,
)
from webui.errors import AttachmentError


# ----- makers -----------------------------------------------------------------------------------
def text_pdf(*pages: str) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def scanned_pdf() -> bytes:
    """A page holding only a picture of text: what a scanner makes (no text layer)."""
    picture = Image.new("L", (600, 200), 255)
    for x in range(50, 550, 7):  # dark strokes standing in for printed letters
        picture.paste(0, (x, 80, x + 3, 120))
    pdf = FPDF()
    pdf.add_page()
    pdf.image(picture, x=10, y=10, w=180)
    return bytes(pdf.output())


def blank_pages_pdf(count: int) -> bytes:
    writer = PdfWriter()
    for _ in range(count):
        writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def handmade_pdf(objects: list[bytes]) -> bytes:
    """A PDF written byte by byte (objects numbered from 1, the first is the catalog), with a correct xref."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def content_stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def page_with(extra: bytes = b"", text: bytes = b"Hand made") -> list[bytes]:
    return [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R " + extra + b" >>",
        content_stream(b"BT /F1 12 Tf 72 700 Td (" + text + b") Tj ET"),
        FONT,
    ]


def word_document() -> bytes:
    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("Sales grew in every region.")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([("Region", "Q1", "Q2"), ("North", "10", "12"), ("South | East", "7", "9")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("Next steps", style="List Bullet")
    document.add_paragraph("The end.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def zip_of(entries: dict[str, bytes], level: int = 6) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def refused(name: str, data: bytes, **kwargs) -> str:
    with pytest.raises(AttachmentError) as info:
        read_document(name, data, **kwargs)
    assert info.value.code == "invalid_attachment"
    return str(info.value)


# ----- PDF --------------------------------------------------------------------------------------
def test_pdf_one_page():
    doc = read_document("notes.pdf", text_pdf("The lighthouse keeper lit the lamp at dusk."))
    assert doc.kind == "pdf" and doc.pages == 1 and doc.name == "notes.pdf" and not doc.truncated
    assert doc.text == "The lighthouse keeper lit the lamp at dusk."


def test_pdf_several_pages_in_order():
    doc = read_document("C:\\fakepath\\book.pdf", text_pdf("Chapter one.", "Chapter two.", "Chapter three."))
    assert doc.name == "book.pdf" and doc.pages == 3
    assert doc.text.index("Chapter one.") < doc.text.index("Chapter two.") < doc.text.index("Chapter three.")


def test_handmade_pdf_reads():
    assert read_document("hand.pdf", handmade_pdf(page_with())).text == "Hand made"


def test_scanned_pdf_says_it_may_be_a_scanned_image():
    message = refused("report.pdf", scanned_pdf())
    assert message.startswith("No text found in report.pdf: it may be a scanned image;")
    assert "OCR" in message


def test_pdf_over_the_page_limit_is_refused():
    data = blank_pages_pdf(MAX_PDF_PAGES + 100)
    message = refused("big.pdf", data)
    assert f"has {MAX_PDF_PAGES + 100} pages" in message and f"at most {MAX_PDF_PAGES} pages" in message
    assert "Split it" in message


def test_pdf_page_limit_counts_real_pages_when_count_lies():
    objects = page_with()
    objects[1] = b"<< /Type /Pages /Kids [3 0 R 3 0 R 3 0 R] /Count 1 >>"  # three pages, /Count says 1
    assert read_document("liar.pdf", handmade_pdf(objects), max_pages=3).pages == 3
    assert "has 3 pages" in refused("liar.pdf", handmade_pdf(objects), max_pages=2)


def test_pdf_stops_at_max_chars():
    pages = [f"Page {n} " + "lorem ipsum " * 40 for n in range(1, 11)]
    doc = read_document("long.pdf", text_pdf(*pages), max_chars=1000)
    assert doc.truncated and len(doc.text) <= 1000 and doc.pages == 10
    assert "Page 1 " in doc.text and "Page 10 " not in doc.text


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_deeply_nested_pdf_object_is_refused(depth):
    nested = b"[" * depth + b"]" * depth
    message = refused("deep.pdf", handmade_pdf(page_with(b"/Deep " + nested)))
    assert "could not be read as a PDF" in message


def test_deep_page_tree_is_refused():
    levels = 3000
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for i in range(levels):  # Pages nodes 2..levels+1, each the only kid of the one before
        parent = b" /Parent %d 0 R" % (i + 1) if i else b""
        objects.append(b"<< /Type /Pages /Kids [%d 0 R] /Count 1%s >>" % (i + 3, parent))
    page = levels + 2
    objects.append(
        b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
        b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (page - 1, page + 1, page + 2)
    )
    objects += [content_stream(b"BT /F1 12 Tf 72 700 Td (Deep) Tj ET"), FONT]
    assert "could not be read as a PDF" in refused("tree.pdf", handmade_pdf(objects))


def test_corrupt_pdf_is_refused():
    message = refused("broken.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 20)
    assert "broken.pdf could not be read as a PDF: the file is damaged" in message


def test_truncated_pdf_is_read_or_refused_cleanly():
    data = text_pdf("First page text.", "Second page text.")
    for cut in (len(data) // 3, len(data) // 2, len(data) - 40):
        try:
            doc = read_document("cut.pdf", data[:cut])
        except AttachmentError as exc:  # pypdf may rebuild what is left; either way no other exception
            assert "cut.pdf" in str(exc)
        else:
            assert doc.kind == "pdf"


def test_password_protected_pdf_is_refused():
    writer = PdfWriter()
    writer.append(io.BytesIO(text_pdf("Secret plans.")))
    writer.encrypt(user_password="hunter2", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    message = refused("secret.pdf", out.getvalue())
    assert "protected by a password" in message and "without the password" in message


def test_pdf_with_only_an_owner_password_reads():
    writer = PdfWriter()
    writer.append(io.BytesIO(text_pdf("Printable but locked.")))
    writer.encrypt(user_password="", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    assert read_document("locked.pdf", out.getvalue()).text == "Printable but locked."


def test_pdf_that_is_not_a_pdf():
    assert "is not a PDF file (it is a zip archive)" in refused("fake.pdf", zip_of({"a.txt": b"hi"}))
    assert "does not start with %PDF" in refused("fake.pdf", b"just some text")


def test_pdf_time_budget(monkeypatch):
    monkeypatch.setattr(documents, "MAX_PDF_SECONDS", -1.0)
    assert "took longer than" in refused("slow.pdf", text_pdf("Anything."))


# ----- DOCX -------------------------------------------------------------------------------------
def test_docx_paragraphs_and_table_in_order():
    doc = read_document("report.docx", word_document())
    assert doc.kind == "docx" and doc.pages is None
    lines = doc.text.split("\n")
    assert lines[0] == "# Quarterly report"
    assert "Sales grew in every region." in lines
    assert "| Region | Q1 | Q2 |" in lines and "| North | 10 | 12 |" in lines
    assert "| South \\| East | 7 | 9 |" in lines  # a | inside a cell does not split it
    assert "- Next steps" in lines
    assert doc.text.index("Sales grew") < doc.text.index("| Region") < doc.text.index("The end.")


def test_docx_merged_cells_appear_once():
    document = docx.Document()
    table = document.add_table(rows=2, cols=3)
    table.cell(0, 0).merge(table.cell(0, 2)).text = "Wide title"
    for c, value in enumerate(("a", "b", "c")):
        table.cell(1, c).text = value
    out = io.BytesIO()
    document.save(out)
    text = read_document("merged.docx", out.getvalue()).text
    assert "| Wide title |" in text.split("\n") and "| a | b | c |" in text


def test_corrupt_docx_is_refused():
    data = word_document()
    message = refused("report.docx", data[: len(data) // 2])
    assert "report.docx is damaged" in message


def test_docx_with_broken_xml_is_refused():
    data = word_document()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    entries["word/document.xml"] = entries["word/document.xml"][:200]
    message = refused("report.docx", zip_of(entries))
    assert "damaged and cannot be read as a Word document" in message and "save it again" in message


def test_plain_zip_renamed_docx_is_refused():
    message = refused("notes.docx", zip_of({"notes.txt": b"hello", "photo.jpg": b"\xff\xd8\xff"}))
    assert "notes.docx is not a Word document" in message and "zip archive without word/document.xml" in message


def test_excel_renamed_docx_is_named():
    message = refused("sheet.docx", zip_of({"xl/workbook.xml": b"<workbook/>", "[Content_Types].xml": b"<x/>"}))
    assert "Excel workbook" in message and "CSV" in message


def test_old_word_file_renamed_docx():
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    assert "old Word 97-2003 document" in refused("old.docx", ole)


def test_docx_zip_bomb_is_refused_before_inflating():
    real = word_document()
    with zipfile.ZipFile(io.BytesIO(real)) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        with archive.open("word/media/padding.bin", "w", force_zip64=True) as f:
            zeros = b"\0" * 2**22
            for _ in range(MAX_DOCX_UNCOMPRESSED // len(zeros) + 2):
                f.write(zeros)
    bomb = out.getvalue()
    assert len(bomb) < 1_000_000  # a small upload that would unpack to more than the limit
    message = refused("bomb.docx", bomb)
    assert "unpacks to" in message and "Remove large pictures or split the document" in message


def test_docx_with_too_many_entries_is_refused():
    entries = {f"word/media/{n}.bin": b"" for n in range(MAX_DOCX_ENTRIES + 1)}
    entries["word/document.xml"] = b"<w:document/>"
    assert f"at most {MAX_DOCX_ENTRIES}" in refused("many.docx", zip_of(entries, level=1))


# ----- text, code, data, HTML ---------------------------------------------------------------------
def test_text_normalised():
    raw = "Title  \r\nline two\t\r\n\r\n\r\n\r\n\r\n\r\nend   \n\n"
    doc = read_document("notes.txt", raw.encode())
    assert doc.kind == "text" and doc.text == "Title\nline two\n\n\nend"
    assert normalise_text("a\rb\x07c") == "a\nbc"


def test_markdown_and_code_kinds():
    assert read_document("README.md", b"# Hi\n\nThere").kind == "markdown"
    code = read_document("src/app.py", b"def f():\n    return 1   \n")
    assert code.kind == "code" and code.name == "app.py" and code.text == "def f():\n    return 1"
    assert read_document("Makefile", b"all:\n\techo hi\n").text == "all:\n\techo hi"
    for ext in (".ts", ".rs", ".go", ".yaml", ".toml", ".sql", ".css", ".xml", ".sh"):
        assert ext in DOCUMENT_EXTENSIONS
        assert read_document(f"file{ext}", b"x = 1").kind == "code"


def test_utf8_bom_is_dropped():
    assert read_document("bom.txt", "café".encode("utf-8-sig")).text == "café"


def test_non_utf8_text_is_refused():
    message = refused("latin.txt", "café au lait".encode("latin-1"))
    assert "latin.txt is not UTF-8 text" in message and "0xE9" in message and "Save it as UTF-8" in message


def test_utf16_text_is_named():
    assert "UTF-16" in refused("wide.txt", "hello".encode("utf-16"))


def test_nul_bytes_are_refused():
    assert "NUL bytes" in refused("data.txt", b"abc\x00def")


def test_image_bytes_named_txt():
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    message = refused("notes.txt", png.getvalue())
    assert "is a PNG image, not a text file" in message and "Attach it as an image" in message
    assert "is a PDF file, not a text file" in refused("paper.txt", text_pdf("Hello"))
    assert (
        read_document("memo.txt", b"MZ Corp annual report").text == "MZ Corp annual report"
    )  # text that starts like a program


@pytest.mark.parametrize("name", ["empty.txt", "empty.pdf", "empty.docx", "empty.csv"])
def test_empty_file_is_refused(name):
    assert f"{name} is empty (0 bytes)" in refused(name, b"")


def test_blank_text_is_refused():
    assert "has no text" in refused("blank.md", b"  \n\n\t\n")


def test_too_large_is_refused_before_reading():
    assert "documents can be at most 1.0 MB" in refused("big.txt", b"a" * (2**20 + 1), max_bytes=2**20)


def test_text_truncated_at_max_chars():
    doc = read_document("long.txt", ("word " * 1000).encode(), max_chars=100)
    assert doc.truncated and len(doc.text) <= 100


def test_csv():
    doc = read_document("table.csv", b"name,age\r\nAda,36\r\nAlan,41\r\n")
    assert doc.kind == "csv" and doc.text == "name,age\nAda,36\nAlan,41"


def test_json_ok_and_invalid():
    doc = read_document("data.json", json.dumps({"a": [1, 2, {"b": "c"}]}, indent=2).encode())
    assert doc.kind == "json" and json.loads(doc.text) == {"a": [1, 2, {"b": "c"}]}
    message = refused("data.json", b'{"a": 1,\n "b": }')
    assert "data.json is not valid JSON (line 2 column" in message and "attach it as .txt" in message
    assert "line 2" in refused("rows.jsonl", b'{"a": 1}\n{"a": \n')
    assert read_document("rows.jsonl", b'{"a": 1}\n\n{"a": 2}\n').kind == "json"


def test_html_text_without_scripts_and_styles():
    page = b"""<!doctype html><html><head><title>Shop</title>
    <style>body { color: red }</style><script>alert("hi & bye")</script></head>
    <body><h1>Welcome &amp; hello</h1><p>First   paragraph
    wraps.</p><ul><li>One</li><li>Two</li></ul>
    <table><tr><th>Item</th><th>Price</th></tr><tr><td>Tea</td><td>3</td></tr></table>
    <pre>  indented
      code</pre><noscript>enable JS</noscript><p>Bye<br>now</p></body></html>"""
    doc = read_document("page.html", page)
    lines = doc.text.split("\n")
    assert doc.kind == "html"
    assert "alert" not in doc.text and "color" not in doc.text and "enable JS" not in doc.text
    assert lines[0] == "Shop" and "# Welcome & hello" in lines and "First paragraph wraps." in lines
    assert "- One" in lines and "- Two" in lines and "Item | Price" in lines and "Tea | 3" in lines
    assert "  indented" in lines and "      code" in lines
    assert "Bye" in lines and "now" in lines


def test_html_stops_at_max_chars():
    page = b"<p>" + b"word " * 100_000 + b"</p>"
    doc = read_document("big.htm", page, max_chars=1000)
    assert doc.truncated and len(doc.text) <= 1000


# ----- what is not a document -----------------------------------------------------------------------
def test_unknown_extension_lists_supported_types():
    message = refused("archive.xyz", b"data")
    assert "the file type '.xyz' is not supported" in message
    for ext in (".pdf", ".docx", ".txt", ".md", ".csv", ".json", ".html", ".py", ".ts"):
        assert ext in message
    assert "a file without an extension" in refused("README", b"hello")


@pytest.mark.parametrize("name", ["photo.png", "photo.JPG", "pic.webp", "anim.gif"])
def test_image_as_document_says_attach_as_image(name):
    assert "attach it as an image" in refused(name, b"\x89PNG\r\n\x1a\n")


def test_svg_is_refused():
    message = refused("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    assert "SVG" in message and "convert it to PNG" in message


def test_office_formats_get_a_hint():
    assert "save it as .docx or PDF" in refused("old.doc", b"x")
    assert "export the sheet as CSV" in refused("sheet.xlsx", b"x")
