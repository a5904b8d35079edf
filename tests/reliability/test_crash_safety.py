"""SIGKILL the real server.py during a streaming chat, a preset save, a download and settings autosave.

Each round starts server.py on the same folders, drives one activity through the UI's own
Gradio endpoints (gradio_client, as the browser does), kills the process at a random moment
(seeded) and starts it again. After every restart: every YAML/JSON file parses, nothing
half-written is listed, and every chat that began streaming holds the user's message.
``WEBUI_KILLS`` sets the number of kills (CI: 4, one of each; full run: 50); ``WEBUI_KILL_SEED`` the seed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from reltools import chat_send_args, endpoint_args, gradio_client, listed_names, scale, unparsable_files

from harness import make_dirs, start_server
from hubstub import HubStub
from testdata import SMOLLM

pytestmark = pytest.mark.integration

KILLS = scale("WEBUI_KILLS", 4, 50)
SEED = int(os.environ.get("WEBUI_KILL_SEED", "9"))
ACTIVITIES = ("chat", "preset", "download", "settings")


class Round:
    """One activity against a running server; records what the client saw before the kill."""

    def __init__(self, url: str, activity: str, n: int, rng: random.Random) -> None:
        self.url, self.activity, self.n, self.rng = url, activity, n, rng
        self.message = f"crash test message {n}"
        self.streamed = False  # the chat reply had started: the user message must be on disk
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            client = gradio_client(self.url)
            getattr(self, self.activity)(client)
        except Exception as exc:  # noqa: BLE001 - the kill cuts the connection: expected
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def chat(self, client: Any) -> None:
        job = client.submit(api_name="/handler", **chat_send_args(client, self.message, 64))
        for out in job:
            box = out[0] or []
            if box and box[-1].get("role") == "assistant":
                self.streamed = True

    def preset(self, client: Any) -> None:
        while True:
            client.predict(
                api_name="/save_preset",
                **endpoint_args(
                    client,
                    "/save_preset",
                    name=f"Crash {self.rng.randrange(3)}",
                    param_4=round(self.rng.uniform(0.1, 1.9), 2),
                ),
            )

    def settings(self, client: Any) -> None:
        while True:
            client.predict(
                api_name="/remember_values",
                **endpoint_args(client, "/remember_values", param_1=round(self.rng.uniform(0.1, 1.9), 2)),
            )

    def download(self, client: Any) -> None:
        _, _, choices, _ = client.predict(
            api_name="/on_list", **endpoint_args(client, "/on_list", text=f"test/crash-{self.n}")
        )
        key = choices["choices"][0][1]
        for _ in client.submit(api_name="/on_start", **endpoint_args(client, "/on_start", key=key)):
            pass


def check_after_restart(user_dir: Path, model_dir: Path, rounds: list[Round]) -> None:
    from webui.services import Services
    from webui.settings import Settings

    bad = unparsable_files(user_dir) + unparsable_files(model_dir)
    assert not bad, "files that do not parse after a kill:\n" + "\n".join(bad)
    settings = Settings.from_file(user_dir / "settings.yaml", {"user_data_dir": user_dir, "model_dir": model_dir})
    services = Services.build(settings, user_dir / "settings.yaml")
    names = listed_names(services)
    leftovers = [n for n in names if n.startswith(".") or n.endswith((".tmp", ".partial", ".incomplete"))]
    assert not leftovers, f"half-written files listed as data: {leftovers}"
    for name in services.presets.names():
        services.presets.load(name)  # every listed preset loads
    chats = {}
    for path in (user_dir / "logs" / "chats").rglob("*.json") if (user_dir / "logs").exists() else []:
        if not path.name.startswith("."):
            chats[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    sent = {r.message for r in rounds if r.activity == "chat"}
    for chat_id, data in chats.items():
        users = [m["content"] for m in data["messages"] if m["role"] == "user"]
        assert users and users[0] in sent, f"chat {chat_id} lost its user message: {data['messages']}"
    for r in rounds:
        if r.activity == "chat" and r.streamed:
            assert any(r.message in [m["content"] for m in c["messages"]] for c in chats.values()), (
                f"the reply to {r.message!r} was streaming when killed, but the chat with it is gone"
            )


def test_sigkill_during_chat_preset_download_and_autosave(tmp_path, monkeypatch, smollm_path):
    rng = random.Random(SEED)
    hub = HubStub().start()
    hub.delay = 0.003  # 98 MB in about 5 s: long enough to be killed midway
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    model_dir, user_dir = make_dirs(tmp_path)
    rounds: list[Round] = []
    tally = {a: 0 for a in ACTIVITIES}
    try:
        for n in range(KILLS):
            srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM, "--threads", "1", ctx_size=1024)
            check_after_restart(user_dir, model_dir, rounds)
            activity = ACTIVITIES[n % len(ACTIVITIES)] if n < len(ACTIVITIES) else rng.choice(ACTIVITIES)
            hub.add_repo(f"test/crash-{n}", {f"crash-{n}.gguf": smollm_path})
            r = Round(srv.url, activity, n, rng)
            worker = threading.Thread(target=r.run, daemon=True)
            worker.start()
            time.sleep(rng.uniform(0.5, 3.5))
            os.kill(srv.process.pid, signal.SIGKILL)
            srv.process.wait(10)
            worker.join(30)
            rounds.append(r)
            tally[activity] += 1
        srv = start_server(tmp_path, model_dir, user_dir, ctx_size=1024)
        check_after_restart(user_dir, model_dir, rounds)
        srv.process.terminate()
        srv.process.wait(15)
    finally:
        hub.stop()
    print(f"kills: {len(rounds)} {tally}; chats that were streaming when killed: {sum(r.streamed for r in rounds)}")
    assert len(rounds) == KILLS


def test_ctrl_c_stops_the_running_replies_and_the_server_exits_with_a_page_open(tmp_path):
    """Found by hand: Ctrl+C during a long reply left the server running until the reply ended, and with a page
    open (its heartbeat stream never ends by itself) until the page was closed. Now Ctrl+C stops each reply as
    Stop does (its text so far kept) and ends the pages' streams, and the server exits."""
    import httpx

    srv = start_server(tmp_path, *make_dirs(tmp_path), "--model", SMOLLM, "--api")
    page_open = threading.Event()

    def heartbeat() -> None:  # what an open page holds
        try:
            with httpx.stream("GET", srv.url + "/gradio_api/heartbeat/open-page", timeout=None) as r:
                for _ in r.iter_lines():
                    page_open.set()
        except httpx.HTTPError:
            pass

    threading.Thread(target=heartbeat, daemon=True).start()
    assert page_open.wait(30), "the heartbeat stream did not open"
    body = {"prompt": "Once upon a time", "max_tokens": 1900, "ban_eos_token": True, "stream": True}
    lines: list[str] = []
    with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=120) as reply:
        try:
            for line in reply.iter_lines():  # (read on until the server ends the reply)
                lines.append(line)
                if len([x for x in lines if x.startswith("data: {")]) == 5:
                    srv.process.send_signal(signal.SIGINT)  # Ctrl+C in the terminal
        except httpx.HTTPError:
            pass
    try:
        code = srv.process.wait(90)
    except Exception:
        srv.process.kill()
        raise AssertionError(f"server.py did not exit after Ctrl+C: {srv.log.read_text()[-2000:]}") from None
    assert code in (0, -signal.SIGINT), code  # (uvicorn ends by raising the signal it caught, as Ctrl+C does)
    chunks = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    assert len(chunks) < 1000, "the reply ran on to its end after Ctrl+C"
    assert "Stopping: 1 generation(s) stopped" in srv.log.read_text(encoding="utf-8")
