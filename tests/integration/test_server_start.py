"""server.py at start: --model uses the model's saved settings; --model-menu picks by number."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from harness import make_dirs, start_server, stop_server
from server_process import free_port
from testdata import GEMMA, PROJECT_DIR, SMOLLM

pytestmark = pytest.mark.integration


def test_model_flag_uses_saved_per_model_settings_and_flags_win(tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    (model_dir / "config-user.yaml").write_text(
        f"{SMOLLM}:\n  loader: llama.cpp\n  n_ctx: 1536\n  preset: Deterministic\n"
    )
    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM, ctx_size=None)
    try:
        health = srv.health()
        assert health["model"] == SMOLLM and health["n_ctx"] == 1536
    finally:
        stop_server(srv)
    assert "preset: Deterministic" in (user_dir / "settings.yaml").read_text()
    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM, ctx_size=1024)
    try:
        assert srv.health()["n_ctx"] == 1024  # --ctx-size typed on the command line wins
    finally:
        stop_server(srv)


def test_model_menu_lists_models_and_loads_the_pick(tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "server.py",
            "--model-menu",
            "--model-dir",
            str(model_dir),
            "--user-data-dir",
            str(user_dir),
            "--listen-port",
            str(port),
            "--ctx-size",
            "512",
        ],
        cwd=PROJECT_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        proc.stdin.write("7\n2\n")  # 7 is out of range: asked again
        proc.stdin.flush()
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Running on") or line.startswith("error"):
                break
        out = "".join(lines)
        assert f"1. {GEMMA}" in out and f"2. {SMOLLM}" in out  # sorted by name, case-insensitive
        assert "Type a number from 0 to 2" in out
        assert f"Loaded {SMOLLM}" in out, out
    finally:
        proc.terminate()
        proc.wait(15)


def test_model_menu_without_terminal_input_starts_without_a_model(tmp_path):
    model_dir, user_dir = make_dirs(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "server.py",
            "--model-menu",
            "--model-dir",
            str(model_dir),
            "--user-data-dir",
            str(user_dir),
            "--listen-port",
            str(port),
        ],
        cwd=PROJECT_DIR,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out = ""
        while "Running on" not in out:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
        assert "starting without picking a model" in out and "Loading" not in out
    finally:
        proc.terminate()
        proc.wait(15)
