"""Who can reach what: loopback by default, loud warnings, UI log-in, API key, Gradio's file route."""

from __future__ import annotations

import io
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
from reltools import gradio_client

from harness import make_dirs, start_server, stop_server
from webui.settings import Settings

pytestmark = pytest.mark.integration
KEY = "test-key-123"


def status(url: str, headers: dict | None = None, cookie: str | None = None) -> int:
    req = urllib.request.Request(url, headers={**(headers or {}), **({"Cookie": cookie} if cookie else {})})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def listening(pid: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN}


def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """server.py with a UI log-in (one user on the command line, one in a file) and an API key."""
    root = tmp_path_factory.mktemp("exposure")
    model_dir, user_dir = make_dirs(root)
    (user_dir / "characters").mkdir()
    (user_dir / "characters" / "Pic.yaml").write_text("name: Pic\ncontext: A picture.\n")
    (user_dir / "characters" / "Pic.png").write_bytes(png())
    (user_dir / "settings.yaml").write_text("preset: Default\n")
    auth_file = root / "users.txt"
    auth_file.write_text("# who may log in\nbob:pass:with:colons\n")
    srv = start_server(
        root, model_dir, user_dir, "--api-key", KEY, "--gradio-auth", "alice:pw1", "--gradio-auth-path", str(auth_file)
    )
    yield srv
    stop_server(srv)


def login(url: str, user: str, password: str) -> str | None:
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/login", data=data), timeout=20) as r:
            return "; ".join(c.split(";")[0] for c in r.headers.get_all("set-cookie") or [])
    except urllib.error.HTTPError:
        return None


def test_binds_loopback_by_default(guarded):
    assert listening(guarded.process.pid) == {"127.0.0.1"}


def test_ui_needs_a_login_from_the_flag_or_the_file(guarded):
    url = guarded.url
    for path in ("/config", "/gradio_api/info", "/gradio_api/file=/etc/passwd"):
        assert status(url + path) == 401, path
    assert login(url, "alice", "wrong") is None
    assert login(url, "mallory", "pw1") is None
    for user, password in (("alice", "pw1"), ("bob", "pass:with:colons")):
        cookie = login(url, user, password)
        assert cookie, user
        assert status(url + "/config", cookie=cookie) == 200


def test_api_key_guards_v1(guarded):
    assert status(guarded.url + "/v1/models") == 401
    assert status(guarded.url + "/v1/models", {"Authorization": "Bearer wrong"}) == 401
    assert status(guarded.url + "/v1/models", {"Authorization": f"Bearer {KEY}"}) == 200


def test_file_route_serves_nothing_outside_what_the_ui_hands_out(guarded):
    cookie = login(guarded.url, "alice", "pw1")
    user, models = guarded.user_dir, guarded.model_dir
    targets = [
        "/etc/passwd",
        str(user / "settings.yaml"),
        str(user / "characters" / "Pic.yaml"),
        str(user / "characters" / "Pic.png"),
        str(next(models.iterdir()).resolve()),
        str(models),
        "../../../../etc/passwd",
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "/tmp/gradio/../../etc/passwd",
        "....//....//etc/passwd",
        "file:///etc/passwd",
        "http://127.0.0.1:1/",
        guarded.url + "/healthz",
        "/proc/self/environ",
        str(Path.home() / ".bashrc"),
    ]
    for target in targets:
        code = status(f"{guarded.url}/gradio_api/file={target}", cookie=cookie)
        assert code in (403, 404), f"{target} answered {code}"


def test_the_files_we_hand_out_are_served(guarded):
    """A character's picture reaches the browser (through Gradio's cache, behind the log-in)."""
    client = gradio_client(guarded.url, auth=("alice", "pw1"))
    # the character, then the editor's five fields (empty: no unsaved edits to keep)
    out = client.predict("Pic", "", "", "", "", "", api_name="/on_pick_character")
    pictures = [o for o in out if isinstance(o, str) and o.endswith(".png") and Path(o).is_file()]
    assert pictures and Path(pictures[0]).read_bytes() == (guarded.user_dir / "characters" / "Pic.png").read_bytes()


def test_listen_without_protection_warns_loudly(tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    srv = start_server(tmp_path, model_dir, user_dir, "--listen", "--api")
    try:
        assert listening(srv.process.pid) == {"0.0.0.0"}
    finally:
        stop_server(srv)
    log = srv.log.read_text()
    assert "WITHOUT A PASSWORD" in log and "--gradio-auth" in log
    assert "NO API KEY" in log


@pytest.mark.parametrize(
    "over, expected",
    [
        ({}, []),
        ({"listen": True}, ["WITHOUT A PASSWORD"]),
        ({"listen": True, "api": True}, ["WITHOUT A PASSWORD", "NO API KEY"]),
        ({"listen": True, "api": True, "gradio_auth": "a:b"}, ["NO API KEY"]),
        ({"listen": True, "api_key": "k", "gradio_auth": "a:b"}, []),
        ({"listen_host": "192.168.1.5", "gradio_auth": "a:b"}, []),
        ({"listen_host": "192.168.1.5"}, ["WITHOUT A PASSWORD"]),
    ],
)
def test_warning_rules(over, expected):
    warnings = Settings(**over).exposure_warnings()
    assert len(warnings) == len(expected)
    for w, e in zip(warnings, expected, strict=True):
        assert e in w


def test_bad_login_file_stops_the_start(tmp_path):
    import subprocess
    import sys

    from testdata import PROJECT_DIR

    bad = tmp_path / "users.txt"
    bad.write_text("just-a-password-no-user\n")
    out = subprocess.run(
        [
            sys.executable,
            str(PROJECT_DIR / "server.py"),
            "--user-data-dir",
            str(tmp_path),
            "--gradio-auth-path",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "not 'user:password'" in out.stderr
    assert "just-a-password" not in out.stderr


def test_a_users_file_broken_by_hand_stops_the_start_with_a_clear_error(tmp_path):
    """Log-in must not silently go, so a broken users.yaml stops the start - with one line saying where, not a
    Python traceback (found by hand)."""
    import subprocess
    import sys

    from testdata import PROJECT_DIR

    (tmp_path / "users.yaml").write_text("users: [alice, bob\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "server.py"), "--user-data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "users.yaml is not valid YAML" in out.stderr and "at line 2" in out.stderr
    assert "Traceback" not in out.stderr
