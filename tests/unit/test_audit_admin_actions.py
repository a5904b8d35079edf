"""What the audit log says about the admin's work (issue 20, item 7): edits of the shared libraries,
user changes made with ``scripts/users.py``, and downloads with their repository and files.

Real files throughout: the services are ``Services.build`` on a user-data folder with a users file
(alice the main admin, carol a second admin, bob a user), ``scripts/users.py`` runs as a program, and a
download comes from the stand-in hub on loopback. Each test reads ``logs/audit.jsonl`` itself and
checks that no password, hash or key is in it.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hubstub import HubStub
from webui.accounts.passwords import hash_password
from webui.characters.character import Character
from webui.params import SamplingParams
from webui.services import Services
from webui.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-2", "carol": "carol-Secret-3"}
ROLES = {"alice": "admin", "bob": "user", "carol": "admin"}


def entries(user_dir: Path) -> list[dict[str, Any]]:
    """Every line of the user-data folder's audit log, read from the file as written."""
    path = user_dir / "logs" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []


def assert_no_secrets(user_dir: Path, *secrets: str) -> None:
    text = (user_dir / "logs" / "audit.jsonl").read_text(encoding="utf-8")
    for secret in (*PASSWORDS.values(), *secrets):
        assert secret not in text, f"{secret!r} is in the audit log"
    assert "$argon2" not in text, "a password hash is in the audit log"


def build(user_dir: Path, loaders: Any, *, users: bool = True) -> Services:
    (user_dir / "models").mkdir(parents=True)
    if users:
        listed = {name: {"password": hash_password(PASSWORDS[name]), "role": ROLES[name]} for name in PASSWORDS}
        (user_dir / "users.yaml").write_text(yaml.safe_dump({"users": listed}, sort_keys=False), encoding="utf-8")
    return Services.build(Settings(user_data_dir=user_dir), user_dir / "settings.yaml", loaders=loaders)


@pytest.fixture
def lab(tmp_path: Path, loaders: Any) -> Iterator[Services]:
    services = build(tmp_path / "user", loaders)
    yield services
    services.close()


def view(services: Services, name: str) -> Services:
    assert services.accounts is not None
    user = services.accounts.find(name)
    assert user is not None
    return services.space(user)


def library_entries(user_dir: Path) -> list[tuple[str, str, str, str]]:
    return [(e["actor"], e["action"], e["kind"], e["name"]) for e in entries(user_dir) if "shared" in e["action"]]


# ---- 1. the shared libraries ---------------------------------------------------------------------------


def test_admins_edits_of_the_shared_libraries_are_logged_with_kind_and_name(lab, tmp_path):
    user_dir = Path(lab.settings.user_data_dir)
    alice, carol = view(lab, "alice"), view(lab, "carol")  # the main admin, and an admin with a folder of her own
    alice.presets.save("Lab", SamplingParams(temperature=0.3))
    assert (user_dir / "presets" / "Lab.yaml").is_file()  # the shared library itself
    alice.presets.delete("Lab")
    alice.characters.save("Guide", Character(name="Guide", greeting="Hi"), picture=b"\x89PNG fake")
    alice.characters.delete("Guide")
    carol.presets.save("Carols", SamplingParams())
    assert (user_dir / "presets" / "Carols.yaml").is_file()
    carol.characters.delete("Tutor")  # a shipped one
    carol.instruction_templates.write("Plain", {"instruction_template": "{{ messages }}"})
    carol.instruction_templates.delete("Plain")

    assert library_entries(user_dir) == [
        ("alice", "save the shared preset", "preset", "Lab"),
        ("alice", "delete the shared preset", "preset", "Lab"),
        ("alice", "save the shared character", "character", "Guide"),
        ("alice", "delete the shared character", "character", "Guide"),
        ("carol", "save the shared preset", "preset", "Carols"),
        ("carol", "delete the shared character", "character", "Tutor"),
        ("carol", "save the shared instruction template", "instruction template", "Plain"),
        ("carol", "delete the shared instruction template", "instruction template", "Plain"),
    ]
    for entry in entries(user_dir):
        assert entry["time"] and entry["actor"] and entry["action"]
    assert_no_secrets(user_dir)


def test_an_admins_import_into_the_shared_library_is_logged_and_a_users_own_copies_are_not(lab, tmp_path):
    user_dir = Path(lab.settings.user_data_dir)
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text('FROM llama3\nPARAMETER temperature 0.5\nSYSTEM "You are Rex."\n', encoding="utf-8")
    result = view(lab, "alice").import_character(modelfile, original_name="Modelfile")
    assert result.preset is not None
    imported = [e for e in entries(user_dir) if "shared" in e["action"]]
    assert [(e["actor"], e["action"], e["name"]) for e in imported] == [
        ("alice", "import the shared character", result.file_name),
        ("alice", "save the shared preset", result.preset),
    ]
    assert imported[0]["file"] == "Modelfile" and imported[0]["kind"] == "character"

    bob = view(lab, "bob")  # his own copies (users/bob/): not the library, not in the log
    bob.presets.save("Creative", SamplingParams(temperature=1.5))
    bob.presets.delete("Creative")
    bob.characters.save("Mine", Character(name="Mine"))
    bob.characters.delete("Mine")
    bob.import_character(modelfile, original_name="Modelfile")
    assert [e for e in entries(user_dir) if e["actor"] == "bob"] == []
    assert len(library_entries(user_dir)) == 2


def test_without_log_in_nothing_is_logged(tmp_path, loaders):
    services = build(tmp_path / "user", loaders, users=False)
    try:
        services.presets.save("Lab", SamplingParams())
        services.presets.delete("Lab")
        services.characters.save("Guide", Character(name="Guide"))
    finally:
        services.close()
    assert entries(tmp_path / "user") == []


# ---- 2. scripts/users.py --------------------------------------------------------------------------------


def users_py(user_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WEBUI_USER_DATA_DIR")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "users.py"), "--user-data-dir", str(user_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=user_dir,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_users_py_changes_go_in_the_audit_log_without_passwords_or_keys(tmp_path):
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    users_py(user_dir, "add", "alice", "--admin", "--password-stdin", stdin=PASSWORDS["alice"] + "\n")
    users_py(user_dir, "add", "bob", "--password-stdin", stdin=PASSWORDS["bob"] + "\n")
    users_py(user_dir, "passwd", "BOB", "--password-stdin", stdin="bob-New-Secret\n")
    users_py(user_dir, "role", "bob", "admin")
    key = users_py(user_dir, "add-key", "bob").stdout.strip()
    assert key.startswith("sk-webui-")
    users_py(user_dir, "list")  # reads only: not logged
    users_py(user_dir, "revoke-keys", "bob")
    key2 = users_py(user_dir, "add-key", "bob").stdout.strip()
    users_py(user_dir, "remove", "bob")

    logged = entries(user_dir)
    assert [(e["action"], e["user"]) for e in logged] == [
        ("add a user", "alice"),
        ("add a user", "bob"),
        ("change a user's password", "bob"),
        ("change a user's role", "bob"),
        ("add an API key", "bob"),
        ("revoke a user's API keys", "bob"),
        ("add an API key", "bob"),
        ("remove a user", "bob"),
    ]
    assert {e["actor"] for e in logged} == {"scripts/users.py"}
    assert {e["os_user"] for e in logged} == {getpass.getuser()}
    assert (logged[0]["role"], logged[1]["role"], logged[3]["role"]) == ("admin", "user", "admin")
    assert (logged[5]["keys_removed"], logged[7]["keys_removed"]) == (1, 1)
    digests = [hashlib.sha256(k.encode()).hexdigest() for k in (key, key2)]
    assert_no_secrets(user_dir, "bob-New-Secret", key, key2, *digests)


def test_users_py_hash_all_names_the_users_not_their_passwords(tmp_path):
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "users.yaml").write_text(
        f"users:\n  alice: {{password: {PASSWORDS['alice']}, role: admin}}\n  bob: {{password: {PASSWORDS['bob']}}}\n",
        encoding="utf-8",
    )
    (user_dir / "api-keys.yaml").write_text("keys:\n  alice: [plain-Key-123]\n", encoding="utf-8")
    users_py(user_dir, "hash-all")
    users_py(user_dir, "hash-all")  # nothing left to hash: nothing logged
    logged = entries(user_dir)
    assert [(e["actor"], e["action"], e["users"]) for e in logged] == [
        ("scripts/users.py", "hash the plain-text passwords", ["alice", "bob"]),
        ("scripts/users.py", "hash the plain-text API keys", ["alice"]),
    ]
    assert_no_secrets(user_dir, "plain-Key-123", hashlib.sha256(b"plain-Key-123").hexdigest())


# ---- 3. downloads ---------------------------------------------------------------------------------------

REPO = "test/tiny-vlm-GGUF"
TOKEN = "hf_Secret_Token_42"


@pytest.fixture
def hub(monkeypatch) -> Iterator[HubStub]:
    stub = HubStub().start()
    stub.add_repo(
        REPO,
        {
            "tiny-vlm-Q8_0.gguf": b"GGUF" + b"\0" * 3000,
            "mmproj-tiny-vlm-Q8_0.gguf": b"GGUF" + b"\1" * 2000,
            "README.md": b"# tiny\n",
        },
    )
    monkeypatch.setenv("HF_ENDPOINT", stub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield stub
    stub.stop()


def test_a_download_started_by_the_admin_names_the_repository_and_files(lab, hub):
    from webui.downloads.hub import list_files, parse_source

    user_dir = Path(lab.settings.user_data_dir)
    listing = list_files(parse_source(REPO))
    choice = next(c for c in listing.choices if c.key == "tiny-vlm-Q8_0.gguf")
    job = view(lab, "alice").download_model(listing, choice, TOKEN)
    deadline = time.monotonic() + 60
    while job.state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.state == "done", job.message
    assert (user_dir / "models" / "tiny-vlm-Q8_0" / "tiny-vlm-Q8_0.gguf").is_file()

    downloads = [e for e in entries(user_dir) if e["action"].startswith("download")]
    assert len(downloads) == 1
    entry = downloads[0]
    assert (entry["actor"], entry["action"], entry["repo"]) == ("alice", "download a model", REPO)
    assert entry["files"] == ["tiny-vlm-Q8_0.gguf", "mmproj-tiny-vlm-Q8_0.gguf"]
    assert entry["target"] == "tiny-vlm-Q8_0"
    assert_no_secrets(user_dir, TOKEN)


def test_a_users_download_is_refused_and_logged_as_refused(lab, hub):
    from webui.downloads.hub import list_files, parse_source
    from webui.errors import PermissionDeniedError

    user_dir = Path(lab.settings.user_data_dir)
    listing = list_files(parse_source(REPO))
    with pytest.raises(PermissionDeniedError):
        view(lab, "bob").download_model(listing, listing.choices[0], TOKEN)
    assert not (user_dir / "models" / "tiny-vlm-Q8_0").exists()
    assert [(e["actor"], e["action"], e["what"]) for e in entries(user_dir)] == [("bob", "refused", "download models")]


def test_a_download_from_a_plain_link_logs_the_link_without_its_query(lab, monkeypatch):
    from webui.downloads.hub import Choice, Listing, RemoteFile, parse_source

    user_dir = Path(lab.settings.user_data_dir)
    source = parse_source("https://me:pw123@files.example.org/share/model.gguf?token=abc123#x")
    assert source.url is not None and source.repo_id is None
    file = RemoteFile("model.gguf", 100)
    choice = Choice("model.gguf", "model.gguf", (file,), "model.gguf", is_folder=False)
    started: list[Any] = []
    # the download itself is not the point here (no such server): the audit log is the real one
    monkeypatch.setattr(lab.downloads, "start", lambda *args: started.append(args) or "job")
    assert view(lab, "alice").download_model(Listing(source, [file], "other", [choice]), choice) == "job"
    assert len(started) == 1
    entry = next(e for e in entries(user_dir) if e["action"] == "download a model")
    assert entry["url"] == "https://files.example.org/share/model.gguf" and "repo" not in entry
    assert entry["files"] == ["model.gguf"]
    assert_no_secrets(user_dir, "abc123", "pw123")
