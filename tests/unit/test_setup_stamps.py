"""scripts/setup.sh: ./start.sh after ./run_tests.sh does not run pip again (issue 16, item 13).

The script runs against a temporary virtual environment whose ``python`` is a fake that only
writes down how it was called, with fakes for ``fc-list``, ``apt-get`` and ``sudo`` first on PATH:
nothing is installed and the project's own .venv is never touched.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testdata import PROJECT_DIR

SETUP = PROJECT_DIR / "scripts" / "setup.sh"
CMAKE_ARGS = "-DTEST=fake"

FAKE_PYTHON = """#!/bin/sh
echo "python $*" >> "$FAKE_LOG"
exit 0
"""
FAKE_TOOL = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_LOG"
{body}
"""


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, object]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    # llama-cpp-python counts as built with these flags, so the script never compiles it here.
    spec = next(
        line
        for line in (PROJECT_DIR / "requirements" / "llama.txt").read_text().splitlines()
        if line.startswith("llama")
    )
    version = spec.split("==", 1)[1].strip()
    (venv / ".webui-llama").write_text(hashlib.sha256(f"{version}|{CMAKE_ARGS}".encode()).hexdigest()[:16] + "\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, body in {
        "fc-list": 'echo "/usr/share/fonts/wqy-zenhei.ttc: WenQuanYi Zen Hei:style=Regular"',
        "apt-get": "exit 1",
        "sudo": "exit 1",
    }.items():
        (tools / name).write_text(FAKE_TOOL.format(body=body))
        (tools / name).chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    env = {
        "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "PYTHON": sys.executable,
        "WEBUI_VENV": str(venv),
        "WEBUI_CACHE": str(tmp_path / "cache"),
        "LLAMA_CMAKE_ARGS": CMAKE_ARGS,
        "CHROMIUM": str(python),  # any executable: Chromium counts as installed
        "FAKE_LOG": str(log),
    }
    return {"env": env, "log": log, "venv": venv}


def setup(sandbox: dict[str, object], *args: str) -> tuple[list[str], str]:
    """Run setup.sh; the calls it made (one line each) and what it printed."""
    log = Path(str(sandbox["log"]))
    log.write_text("")
    proc = subprocess.run(
        ["bash", str(SETUP), *args],
        env=sandbox["env"],  # type: ignore[arg-type]
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines(), proc.stderr


def pip_calls(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("python -m pip")]


def test_the_runtime_setup_after_the_test_setup_runs_no_pip(sandbox):
    calls, out = setup(sandbox, "--tests")
    assert pip_calls(calls) and "installing Python packages" in out
    assert "requirements/test.txt" in pip_calls(calls)[0]
    calls, out = setup(sandbox)  # what ./start.sh runs
    assert pip_calls(calls) == [] and "installing Python packages" not in out, out
    assert any("download-model.py --starter" in c for c in calls)
    assert not any(c.startswith(("apt-get", "sudo")) for c in calls)  # the fake fc-list lists a CJK font


def test_a_test_stamp_from_an_older_setup_counts_for_the_runtime_too(sandbox):
    """A venv set up for tests before the runtime stamp was written: the next test set-up writes it."""
    setup(sandbox, "--tests")
    runtime_stamp = Path(str(sandbox["venv"])) / ".webui-requirements-0"
    runtime_stamp.unlink()
    calls, _ = setup(sandbox, "--tests")
    assert pip_calls(calls) == [] and runtime_stamp.is_file()
    calls, out = setup(sandbox)
    assert pip_calls(calls) == [] and "installing Python packages" not in out


def test_the_runtime_setup_alone_installs_only_the_runtime_packages(sandbox):
    calls, out = setup(sandbox)
    assert len(pip_calls(calls)) == 1 and "requirements/test.txt" not in pip_calls(calls)[0]
    calls, _ = setup(sandbox, "--tests")  # the test extras still get installed
    resolved, no_deps = pip_calls(calls)
    assert "requirements/test.txt" in resolved and "--no-deps -r" in no_deps and "test-nodeps.txt" in no_deps


def test_the_test_setup_installs_a_cjk_font_when_there_is_none(sandbox):
    tools = Path(str(sandbox["env"]["PATH"]).split(os.pathsep)[0])  # type: ignore[index]
    (tools / "fc-list").write_text(FAKE_TOOL.format(body="exit 0"))  # lists no font
    (tools / "apt-get").write_text(FAKE_TOOL.format(body="exit 0"))
    (tools / "sudo").write_text(FAKE_TOOL.format(body='shift 0; exec "$@"'))
    calls, _ = setup(sandbox, "--tests")
    assert any(c.startswith("apt-get install") and "fonts-wqy-zenhei" in c for c in calls), calls
    calls, _ = setup(sandbox)  # only the test set-up installs system packages
    assert not any(c.startswith("apt-get install") for c in calls)
