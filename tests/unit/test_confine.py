"""The file tools stay inside the one folder the user chose: no ``..``, no absolute paths or symlinks out."""

from __future__ import annotations

from pathlib import Path

import pytest

from webui.tools.confine import list_folder, read_text, resolve_inside


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """``shared/`` (the allowed folder) with a file and a subfolder, and a secret next to it."""
    shared = tmp_path / "shared"
    (shared / "notes").mkdir(parents=True)
    (shared / "notes" / "todo.txt").write_text("buy milk\n", encoding="utf-8")
    (shared / "readme.md").write_text("# hello\n", encoding="utf-8")
    secret = tmp_path / "secret.txt"
    secret.write_text("password", encoding="utf-8")
    return shared, secret


def test_reads_and_lists_inside(layout: tuple[Path, Path]) -> None:
    shared, _ = layout
    assert read_text(shared, "notes/todo.txt") == ("buy milk\n", 0)
    assert read_text(shared, "./notes/../readme.md") == ("# hello\n", 0)
    assert read_text(shared, str(shared / "readme.md"))[0] == "# hello\n"  # absolute, but inside
    entries, left = list_folder(shared, ".")
    assert [(e.name, e.is_dir) for e in entries] == [("notes", True), ("readme.md", False)]
    assert left == 0
    assert list_folder(shared, "")[0] == entries


@pytest.mark.parametrize("path", ["../secret.txt", "notes/../../secret.txt", "..", "../shared/../secret.txt"])
def test_dot_dot_escapes_are_refused(layout: tuple[Path, Path], path: str) -> None:
    shared, _ = layout
    with pytest.raises(PermissionError, match="outside the folder"):
        read_text(shared, path)


def test_absolute_path_outside_is_refused(layout: tuple[Path, Path]) -> None:
    shared, secret = layout
    with pytest.raises(PermissionError, match="outside the folder"):
        read_text(shared, str(secret))
    with pytest.raises(PermissionError, match="outside the folder"):
        list_folder(shared, "/")


def test_symlink_out_is_refused_and_symlink_inside_works(layout: tuple[Path, Path]) -> None:
    shared, secret = layout
    (shared / "escape.txt").symlink_to(secret)
    (shared / "escape_dir").symlink_to(secret.parent, target_is_directory=True)
    (shared / "alias.txt").symlink_to(shared / "notes" / "todo.txt")
    with pytest.raises(PermissionError, match="outside the folder"):
        read_text(shared, "escape.txt")
    with pytest.raises(PermissionError, match="outside the folder"):
        read_text(shared, "escape_dir/secret.txt")
    with pytest.raises(PermissionError, match="outside the folder"):
        list_folder(shared, "escape_dir")
    assert read_text(shared, "alias.txt")[0] == "buy milk\n"


def test_allowed_folder_reached_through_a_symlink(tmp_path: Path, layout: tuple[Path, Path]) -> None:
    shared, _ = layout
    link = tmp_path / "link_to_shared"
    link.symlink_to(shared, target_is_directory=True)
    assert read_text(link, "readme.md")[0] == "# hello\n"
    with pytest.raises(PermissionError):
        read_text(link, "../secret.txt")


def test_no_folder_chosen_or_missing(tmp_path: Path) -> None:
    with pytest.raises(PermissionError, match="--tools-folder"):
        read_text(None, "x.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_folder(tmp_path / "gone", ".")


def test_missing_file_folder_and_binary(layout: tuple[Path, Path]) -> None:
    shared, _ = layout
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_text(shared, "nothing.txt")
    with pytest.raises(IsADirectoryError, match="list_files"):
        read_text(shared, "notes")
    with pytest.raises(NotADirectoryError, match="read_file"):
        list_folder(shared, "readme.md")
    (shared / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ValueError, match="binary"):
        read_text(shared, "image.png")
    (shared / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8 text"):
        read_text(shared, "latin1.txt")
    with pytest.raises(ValueError, match="NUL"):
        resolve_inside(shared, "a\x00b")


def test_reading_is_bounded(layout: tuple[Path, Path]) -> None:
    shared, _ = layout
    (shared / "big.txt").write_text("é" * 1000, encoding="utf-8")  # 2000 bytes
    text, left = read_text(shared, "big.txt", max_bytes=101)  # cuts a two-byte character in half
    assert text == "é" * 50
    assert left == 1899


def test_listing_is_bounded(tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / f"f{i:02}.txt").write_text("x", encoding="utf-8")
    entries, left = list_folder(tmp_path, ".", max_entries=5)
    assert [e.name for e in entries] == ["f00.txt", "f01.txt", "f02.txt", "f03.txt", "f04.txt"]
    assert left == 7
