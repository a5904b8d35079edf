#!/usr/bin/env python3
"""The UI with a long chat: page-open time and per-update streaming cost, 10 vs 500 messages.

    .venv/bin/python bench/ui.py
    .venv/bin/python bench/ui.py --sizes 10,100 --reps 2

For each chat size a server.py (SmolLM2) starts with a saved chat of that many
messages as the open chat. In Debian Chromium (Playwright):

* page open: from navigation until the chat's last message is on screen (median);
* streaming: one reply of ``--tokens`` tokens (greedy, end-of-text banned); the
  bytes the browser receives on Gradio's event stream during the reply
  (Chrome DevTools ``Network.dataReceived``), the number of updates, the time
  from Enter to the first text (mostly prompt evaluation: a 500-message chat
  fills the whole context) and from the first text to the finished reply.

Targets: bytes per update do not grow with the chat (Gradio sends diffs); the
streaming time (first text to finished reply) does not grow either; opening the 500-message chat takes at most
3 x the 10-message one.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import MODELS_DIR, SMOLLM, median, print_table, servers, start_our_server, write_results

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
WORDS = ("the river carried small boats past old mills while children counted clouds and merchants argued "
         "about the price of salt").split()


def make_user_dir(root: Path, n_messages: int, tokens: int) -> Path:
    from webui.history import ChatStore, Message
    from webui.storage import write_yaml

    user = root / f"user-{n_messages}"
    store = ChatStore(user / "logs" / "chats")
    chat = store.new("Assistant")
    chat.title = f"{n_messages} messages"
    for i in range(n_messages):
        role = "user" if i % 2 == 0 else "assistant"
        body = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(40))
        chat.messages.append(Message(role, f"MSG-{i:04d} {body}"))
    store.save(chat)
    write_yaml(user / "settings.yaml", {"chat_character": "Assistant", "chat_id": chat.id,
                                        "params": {"max_tokens": tokens, "temperature": 0, "ban_eos_token": True}})
    return user


def cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def browser_pids() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["name"]) if "chrom" in (p.info["name"] or "").lower()]


def measure(browser, url: str, n_messages: int, reps: int, server_pid: int) -> dict:
    last = f"MSG-{n_messages - 1:04d}"
    opens = []
    for _ in range(reps):
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        start = time.perf_counter()
        page.goto(url + "/")
        page.get_by_role("tab", name="Chat").click()
        page.wait_for_function("(m) => document.querySelector('#chat-box')?.innerText.includes(m)", arg=last,
                               timeout=120_000)
        opens.append(time.perf_counter() - start)
        page.close()
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.goto(url + "/")
    page.get_by_role("tab", name="Chat").click()
    page.wait_for_function("(m) => document.querySelector('#chat-box')?.innerText.includes(m)", arg=last,
                           timeout=120_000)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    received: list[int] = []
    streams: set[str] = set()

    def on_response(ev):
        if "queue/data" in ev["response"]["url"]:
            streams.add(ev["requestId"])

    cdp.on("Network.responseReceived", on_response)
    cdp.on("Network.dataReceived", lambda ev: received.append(ev["dataLength"]) if ev["requestId"] in streams else None)
    n_bots = page.locator("#chat-box [data-testid=bot]").count()
    box = page.locator("#chat-input textarea")
    box.fill("Tell me a long story about a lighthouse keeper.")
    start = time.perf_counter()
    box.press("Enter")
    page.wait_for_function("(n) => { const b = document.querySelectorAll('#chat-box [data-testid=bot]');"
                           " return b.length > n && b[b.length-1].innerText.trim().length > 0; }", arg=n_bots,
                           timeout=300_000, polling=20)
    first_text = time.perf_counter() - start
    chrome = browser_pids()
    cpu_browser, cpu_server = cpu_seconds(chrome), cpu_seconds([server_pid])
    page.wait_for_function("() => { const b = document.querySelectorAll('#chat-box [data-testid=bot]');"
                           " return b.length && b[b.length-1].innerText.includes('tokens/s'); }", timeout=300_000)
    reply_s = time.perf_counter() - start
    cpu_browser, cpu_server = cpu_seconds(chrome) - cpu_browser, cpu_seconds([server_pid]) - cpu_server
    time.sleep(0.5)
    page.close()
    return {"messages": n_messages, "open_s": median(opens), "opens": opens, "reply_s": reply_s,
            "first_text_s": first_text, "stream_s": reply_s - first_text,
            "browser_cpu_s_while_streaming": cpu_browser, "server_cpu_s_while_streaming": cpu_server,
            "updates": len(received), "bytes": sum(received),
            "bytes_per_update": sum(received) / max(len(received), 1),
            "median_bytes_per_update": median(received) if received else 0, "sizes": received}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,500")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for n in sizes:
            user = make_user_dir(Path(tmp), n, args.tokens)
            srv = start_our_server(MODELS_DIR / SMOLLM, Path(tmp), n_ctx=2048, extra=("--user-data-dir", str(user)))
            with servers(srv):
                rows.append(measure(browser, srv.url, n, args.reps, srv.pid))
                print(f"  {n} messages: open {rows[-1]['open_s']:.2f} s, reply {rows[-1]['reply_s']:.2f} s, "
                      f"{rows[-1]['updates']} updates, {rows[-1]['bytes_per_update']:.0f} bytes/update", flush=True)
        browser.close()
    small, big = rows[0], rows[-1]
    summary = {"open_ratio": big["open_s"] / small["open_s"], "open_target": 3.0,
               "bytes_per_update_ratio": big["median_bytes_per_update"] / small["median_bytes_per_update"],
               "reply_time_ratio": big["reply_s"] / small["reply_s"],
               "stream_time_ratio": big["stream_s"] / small["stream_s"]}
    summary["met"] = (summary["open_ratio"] <= 3.0 and summary["bytes_per_update_ratio"] <= 1.5
                      and summary["stream_time_ratio"] <= 1.5)
    print_table(rows, ["messages", "open_s", "first_text_s", "stream_s", "updates", "median_bytes_per_update",
                       "browser_cpu_s_while_streaming", "server_cpu_s_while_streaming"], "UI")
    print_table([summary], ["open_ratio", "bytes_per_update_ratio", "stream_time_ratio", "reply_time_ratio", "met"],
                "Summary")
    write_results("ui", {"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "summary": summary},
                  args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
