"""Perplexity from an uploaded .txt (Sampling tab → Upload a .txt): the handler the tab wires to the upload
button, fed real files written to a temporary folder, as Gradio hands them over (a path)."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from fakes import FakeBackend
from webui.errors import AttachmentError
from webui.loaders import LoaderRegistry
from webui.services import Services
from webui.settings import Settings
from webui.ui import build_ui
from webui.ui.common import error_text
from webui.ui.sampling_tab import read_text_file

#: Non-ASCII on purpose: accents, Cyrillic, CJK, an emoji (4 UTF-8 bytes), a Windows line ending.
TEXT = "Le café brûlé — «Привет, мир»\r\n東京は大きい 🙂\nend"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Any]:
    user_dir = tmp_path_factory.mktemp("upload") / "user"
    user_dir.mkdir()
    services = Services.build(
        Settings(user_data_dir=user_dir), user_dir / "settings.yaml", loaders=LoaderRegistry([FakeBackend])
    )
    yield build_ui(services)
    services.close()


def upload_event(demo: Any) -> Any:
    (found,) = [
        f
        for f in demo.fns.values()
        if getattr(f.fn, "__qualname__", "").endswith("build_sampling_tab.<locals>.on_upload")
    ]
    return found


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_a_utf8_text_arrives_in_the_perplexity_box_as_written(demo, tmp_path):
    event = upload_event(demo)
    assert [c.elem_id for c in event.outputs] == ["sampling-ppl-text"]  # the box Evaluate reads
    path = write(tmp_path, "sample.txt", TEXT.encode("utf-8"))
    assert event.fn(path) == TEXT
    # a byte-order mark (Notepad's "UTF-8 with BOM") is not part of the text
    path = write(tmp_path, "bom.txt", codecs.BOM_UTF8 + TEXT.encode("utf-8"))
    assert event.fn(path) == TEXT


def test_no_file_changes_nothing(demo):
    assert isinstance(upload_event(demo).fn(None), type(gr.skip()))


def test_a_legacy_encoding_arrives_with_a_warning_that_says_so(demo, tmp_path):
    path = write(tmp_path, "latin1.txt", "Le café brûlé\n".encode("latin-1"))
    with pytest.warns(UserWarning, match=r"latin1\.txt is not UTF-8 text"):
        text = upload_event(demo).fn(path)
    assert text == "Le caf\ufffd br\ufffdl\ufffd\n"


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10", "binary file"),
        ("tool.txt", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)), "binary file"),
        ("notepad.txt", codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "UTF-16"),
        ("wide.txt", TEXT.encode("utf-16-be"), "binary file"),  # no BOM: its NUL bytes give it away
    ],
)
def test_a_binary_or_utf16_file_is_refused_with_a_clear_error(demo, tmp_path, name, data, says):
    with pytest.raises(gr.Error, match=rf"{name}.*{says}") as caught:
        upload_event(demo).fn(write(tmp_path, name, data))
    assert "UTF-8" in str(caught.value)  # and what to do instead


@pytest.mark.parametrize("data", [b"", codecs.BOM_UTF8])
def test_an_empty_file_says_so_and_leaves_the_box_alone(demo, tmp_path, data):
    with pytest.raises(gr.Error, match=r"empty\.txt is empty"):
        upload_event(demo).fn(write(tmp_path, "empty.txt", data))


def test_the_errors_speak_the_page_language(tmp_path):
    with pytest.raises(AttachmentError) as caught:
        read_text_file(write(tmp_path, "пусто.txt", b""), "ru")
    assert caught.value.message == "пусто.txt is empty: there is no text in it to evaluate."
    assert error_text(caught.value, "ru") == "пусто.txt пуст: в нём нет текста для оценки."
