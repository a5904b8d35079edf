import os

import pytest

from webui.errors import InvalidNameError, SettingsError
from webui.storage import atomic_write_text, read_yaml, resolve_inside, safe_name, write_yaml


@pytest.mark.parametrize("name", ["Default", "My preset 2", "Ассистент", "助手", "a.b-c_d (1)"])
def test_safe_name_accepts_ordinary_names(name):
    assert safe_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "../x",
        "..",
        ".",
        "a/b",
        "a\\b",
        "/etc/passwd",
        "x\x00y",
        ".hidden",
        "con",
        "CON.yaml",
        "lpt1",
        "name.",
        "a" * 121,
        "a:b",
        "tab\there",
        "\uff0e\uff0e\uff0fx",  # full-width ../x
    ],
)
def test_safe_name_rejects_dangerous_names(name):
    with pytest.raises(InvalidNameError):
        safe_name(name)


def test_resolve_inside_stays_inside(tmp_path):
    assert resolve_inside(tmp_path, "a.yaml") == tmp_path / "a.yaml"
    with pytest.raises(InvalidNameError):
        resolve_inside(tmp_path, "../a.yaml")
    # a symlink pointing outside is caught by the second check
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(InvalidNameError):
        resolve_inside(tmp_path, "link")


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["f.txt"]


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_yaml_round_trip_and_errors(tmp_path):
    p = tmp_path / "x.yaml"
    write_yaml(p, {"temperature": 0.5, "name": "Ассистент"})
    assert read_yaml(p) == {"temperature": 0.5, "name": "Ассистент"}
    p.write_text("")
    assert read_yaml(p) == {}
    p.write_text("a: [1, 2\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        read_yaml(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(SettingsError, match="mapping"):
        read_yaml(p)


def test_a_yaml_error_names_no_parser_token_a_page_would_drop_as_a_tag(tmp_path):
    path = tmp_path / "Broken.yaml"
    path.write_text("temperature: [1\n")
    with pytest.raises(SettingsError) as caught:
        read_yaml(path)
    assert str(caught.value.message) == (
        "Broken.yaml is not valid YAML: expected ',' or ']', but got the end of the file at line 2, column 1"
    )
