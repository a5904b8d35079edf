"""Downloads through the real huggingface_hub client from a stand-in hub on loopback (HF_ENDPOINT)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest

from hubstub import HubStub, tiny_transformers_folder
from testdata import PROJECT_DIR, SMOLLM
from webui.downloads.hub import DownloadManager, download, list_files, parse_source
from webui.errors import DownloadError
from webui.models.manager import ModelManager
from webui.params import LoadOptions

pytestmark = pytest.mark.integration
GGUF_REPO = "test/SmolLM2-135M-Instruct-GGUF"
HF_REPO = "test/tiny-llama"
TOKEN = "hf_test_token_123"


@pytest.fixture(scope="module")
def tiny_folder(smollm_path, tmp_path_factory) -> Path:
    from hf_checkpoint import default_cache_dir

    return tiny_transformers_folder(default_cache_dir() / "tiny-llama-random", smollm_path)


@pytest.fixture
def hub(smollm_path, tiny_folder, monkeypatch):
    stub = HubStub().start()
    stub.add_repo(
        GGUF_REPO,
        {
            SMOLLM: smollm_path,
            "SmolLM2-135M-Instruct.Q2_K.gguf": b"GGUF" + b"\0" * 60_000,
            "README.md": b"# SmolLM2 GGUF\n",
        },
    )
    files = {p.name: p for p in tiny_folder.iterdir() if p.is_file()}
    files["pytorch_model.bin"] = b"not really a pickle"
    stub.add_repo(HF_REPO, files)
    stub.add_repo("test/pickle-only", {"config.json": (tiny_folder / "config.json"), "pytorch_model.bin": b"x" * 100})
    stub.add_repo("test/gated", {"tiny.gguf": b"GGUF" + b"\1" * 1000}, gated_token=TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", stub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield stub
    stub.stop()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_list_pick_and_download_resumes_after_dropped_connection(hub, tmp_path, smollm_path):
    hub.drop_after = 30_000_000  # the server hangs up after 30 MB of the 98 MB file
    listing = list_files(parse_source(GGUF_REPO))
    assert listing.kind == "gguf"
    assert [c.key for c in listing.choices] == ["SmolLM2-135M-Instruct.Q2_K.gguf", SMOLLM]  # sorted by size
    assert "98.4 MB" in listing.choices[1].label and "RAM" in listing.choices[1].label
    events = []
    models = ModelManager(tmp_path)
    path = download(listing, listing.choices[1], tmp_path, report=lambda p: events.append((p.done, p.total)))
    assert path == tmp_path / SMOLLM and sha256(path) == sha256(smollm_path)
    ranges = [r["range"] for r in hub.requests if r["method"] == "GET" and r["range"]]
    assert ranges and int(ranges[0][6:].split("-")[0]) > 0  # the second request asked only for the rest
    assert len(events) > 3 and events[-1] == (98_362_432, 98_362_432)
    assert all(a[0] <= b[0] for a, b in pairwise(events))
    assert models.list_models() == [SMOLLM]
    assert not (tmp_path / ".downloads").exists()
    facts = models.facts(SMOLLM)
    assert facts.architecture == "llama" and facts.quantization == "Q4_1"


def test_cancel_keeps_the_part_and_the_next_attempt_resumes(hub, tmp_path):
    hub.delay = 0.02  # 64 KB per 20 ms: slow enough to cancel midway
    listing = list_files(parse_source(GGUF_REPO))
    choice = next(c for c in listing.choices if c.key == SMOLLM)
    manager = DownloadManager(tmp_path)
    job = manager.start(listing, choice)
    while job.progress.done < 2_000_000:
        time.sleep(0.05)
    assert job.state == "running"
    assert manager.cancel(job.id)
    job.thread.join(30)
    assert job.state == "cancelled" and "resume" in job.message
    partials = list((tmp_path / ".downloads").rglob("*.partial"))
    assert len(partials) == 1 and partials[0].stat().st_size > 0
    kept = partials[0].stat().st_size
    assert ModelManager(tmp_path).list_models() == []  # nothing half-done is listed
    hub.delay = 0
    hub.requests.clear()
    path = download(listing, choice, tmp_path)
    first_get = next(r for r in hub.requests if r["method"] == "GET" and "resolve" in r["path"])
    assert first_get["range"] == f"bytes={kept}-"
    assert path.stat().st_size == 98_362_432 and sha256(path) == choice.files[0].sha256


def test_checksum_mismatch_is_rejected_and_nothing_is_listed(hub, tmp_path):
    hub.corrupt.add(SMOLLM)
    listing = list_files(parse_source(GGUF_REPO))
    choice = next(c for c in listing.choices if c.key == SMOLLM)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(listing, choice, tmp_path)
    assert ModelManager(tmp_path).list_models() == []
    assert not list(tmp_path.rglob("*.gguf")) and not list(tmp_path.rglob("*.partial"))


def test_missing_repo_file_and_branch_give_clear_messages(hub, tmp_path):
    with pytest.raises(DownloadError, match="not found.*404"):
        list_files(parse_source("test/no-such-repo"))
    with pytest.raises(DownloadError, match="branch or revision does not exist"):
        list_files(parse_source(f"{GGUF_REPO}:nope"))
    with pytest.raises(DownloadError, match="no file called"):
        list_files(parse_source(f"{hub.url}/{GGUF_REPO}/resolve/main/missing.gguf"))


def test_gated_repo_needs_a_token(hub, tmp_path, monkeypatch):
    with pytest.raises(DownloadError, match="gated.*HF_TOKEN"):
        list_files(parse_source("test/gated"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    listing = list_files(parse_source("test/gated"))
    path = download(listing, listing.choices[0], tmp_path)
    assert path.read_bytes().startswith(b"GGUF")
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in hub.requests if "gated" in r["path"] and r["auth"])


def test_network_down_is_explained(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError, match="Cannot reach"):
        list_files(parse_source(GGUF_REPO))


def test_disk_full_is_refused_before_writing(hub, tmp_path, monkeypatch):
    import shutil as shutil_mod

    listing = list_files(parse_source(GGUF_REPO))
    choice = next(c for c in listing.choices if c.key == SMOLLM)
    real = shutil_mod.disk_usage
    monkeypatch.setattr("webui.downloads.hub.shutil.disk_usage", lambda p: real(p)._replace(free=10_000_000))
    with pytest.raises(DownloadError, match="Not enough disk space"):
        download(listing, choice, tmp_path)
    assert not list(tmp_path.rglob("*.gguf*"))


def test_transformers_repo_downloads_a_loadable_folder_without_pickles(hub, tmp_path, tiny_folder):
    listing = list_files(parse_source(HF_REPO))
    assert listing.kind == "transformers" and "pickle" in listing.note
    path = download(listing, listing.choices[0], tmp_path)
    assert path == tmp_path / "test_tiny-llama"
    assert not (path / "pytorch_model.bin").exists()
    assert sha256(path / "model.safetensors") == sha256(tiny_folder / "model.safetensors")
    models = ModelManager(tmp_path, LoadOptions(n_ctx=256))
    assert models.list_models() == ["test_tiny-llama"] and models.infer_loader("test_tiny-llama") == "transformers"
    loaded = models.load("test_tiny-llama")  # the real transformers loader: the folder is complete
    assert loaded.loader == "transformers"
    models.unload()


def test_pickle_only_repo_is_refused_unless_allowed(hub, tmp_path):
    with pytest.raises(DownloadError, match="pickle"):
        list_files(parse_source("test/pickle-only"))
    listing = list_files(parse_source("test/pickle-only"), allow_pickle=True)
    assert [f.path for f in listing.choices[0].files] == ["config.json", "pytorch_model.bin"]


def test_command_line_download_with_terminal_progress(hub, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hub.url}
    out = subprocess.run(
        [sys.executable, "download-model.py", GGUF_REPO, "--list"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert SMOLLM in out.stdout and "Q4_1" in out.stdout and "98.4 MB" in out.stdout
    out = subprocess.run(
        [sys.executable, "download-model.py", GGUF_REPO, "--quant", "Q4_1", "--model-dir", str(tmp_path)],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "[####" in out.stdout and "100%" in out.stdout and "verified" in out.stdout
    assert (tmp_path / SMOLLM).stat().st_size == 98_362_432
    out = subprocess.run(
        [sys.executable, "download-model.py", "test/nothing-here", "--model-dir", str(tmp_path)],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "not found" in out.stderr
