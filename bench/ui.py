#!/usr/bin/env python3
"""The UI with a long chat: page-open time and per-update streaming cost, 10 vs 500 messages.

    .venv/bin/python bench/ui.py
    .venv/bin/python bench/ui.py --sizes 10,100 --reps 2 --tokens 128

For each chat size a server.py (SmolLM2) starts with a saved chat of that many
messages as the open chat. In Debian Chromium (Playwright):

* page open: from navigation until the chat's last message is on screen (median);
* streaming: one reply of ``--tokens`` tokens (greedy, end-of-text banned); the
  bytes the browser receives on Gradio's event stream during the reply
  (Chrome DevTools ``Network.dataReceived``), the number of updates, the time
  from Enter to the first text (mostly prompt evaluation: a 500-message chat
  fills the whole context) and from the first text to the finished reply.

Then the largest chat once more with every message shown (``chat_window: 0``, the box as it
was before it showed a window of the newest messages): the same run's baseline.

The reply's own stats line gives the model's tokens/s: how much of a longer streaming time is the
model decoding slower (a longer context, or the browser taking CPU from it) rather than the page.

Targets: bytes per update do not grow with the chat (Gradio sends diffs); the browser's CPU time
per update stops growing once the chat is longer than the box's window (500 vs 100 messages,
``update_cost_ratio`` <= 1.25); opening the 500-message chat takes at most 3 x the 10-message one.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

from common import MODELS_DIR, SMOLLM, median, print_table, servers, start_our_server, write_results

from browserkit import CHROMIUM, CHROMIUM_ARGS

WORDS = (
    "the river carried small boats past old mills while children counted clouds and merchants argued "
    "about the price of salt"
).split()


def make_user_dir(root: Path, n_messages: int, tokens: int, window: int | None = None) -> Path:
    from webui.chat.history import ChatStore, Message
    from webui.storage import write_yaml

    user = root / f"user-{n_messages}-{window}"
    store = ChatStore(user / "logs" / "chats")
    chat = store.new("Assistant")
    chat.title = f"{n_messages} messages"
    for i in range(n_messages):
        role = "user" if i % 2 == 0 else "assistant"
        body = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(40))
        chat.messages.append(Message(role, f"MSG-{i:04d} {body}"))
    store.save(chat)
    settings = {
        "chat_character": "Assistant",
        "chat_id": chat.id,
        "params": {"max_tokens": tokens, "temperature": 0, "ban_eos_token": True},
    }
    if window is not None:
        settings["chat_window"] = window
    write_yaml(user / "settings.yaml", settings)
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
        page.wait_for_function(
            "(m) => document.querySelector('#chat-box')?.innerText.includes(m)", arg=last, timeout=120_000
        )
        opens.append(time.perf_counter() - start)
        page.close()
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.goto(url + "/")
    page.get_by_role("tab", name="Chat").click()
    page.wait_for_function(
        "(m) => document.querySelector('#chat-box')?.innerText.includes(m)", arg=last, timeout=120_000
    )
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    received: list[int] = []
    streams: set[str] = set()

    def on_response(ev):
        if "queue/data" in ev["response"]["url"]:
            streams.add(ev["requestId"])

    cdp.on("Network.responseReceived", on_response)
    cdp.on("Network.dataReceived", lambda ev: received.append(ev["dataLength"]) if ev["requestId"] in streams else None)
    box = page.locator("#chat-input textarea")
    box.fill("Tell me a long story about a lighthouse keeper.")
    start = time.perf_counter()
    box.press("Enter")
    # the newest reply is the last bot message once it is not the saved chat's last one (the box shows a
    # window of the newest messages, so counting messages does not tell)
    page.wait_for_function(
        "(m) => { const b = document.querySelectorAll('#chat-box [data-testid=bot]');"
        " const t = b.length ? b[b.length-1].innerText : '';"
        " return !t.includes(m) && t.trim().length > 0; }",
        arg=last,
        timeout=300_000,
        polling=20,
    )
    first_text = time.perf_counter() - start
    chrome = browser_pids()
    cpu_browser, cpu_server = cpu_seconds(chrome), cpu_seconds([server_pid])
    # the turn has ended when Send is back from "Generating..." and the stats line shows the reply's figures
    page.wait_for_function(
        "() => { const s = document.querySelector('#chat-reply-stats'), b = document.querySelector('#chat-send');"
        " return s && s.innerText.includes('tokens/s') && b && !b.classList.contains('generating'); }",
        timeout=300_000,
    )
    reply_s = time.perf_counter() - start
    cpu_browser, cpu_server = cpu_seconds(chrome) - cpu_browser, cpu_seconds([server_pid]) - cpu_server
    # The server's own figures for this reply (the stats line under the box): the model's decoding speed.
    stats = page.locator("#chat-reply-stats").inner_text()
    tokens = float(re.search(r"(\d+) tokens\b", stats).group(1))
    tps = float(re.search(r"([\d.]+) tokens/s", stats).group(1))
    time.sleep(0.5)
    page.close()
    return {
        "messages": n_messages,
        "open_s": median(opens),
        "opens": opens,
        "reply_s": reply_s,
        "first_text_s": first_text,
        "stream_s": reply_s - first_text,
        "generation_s": tokens / tps,
        "tokens_per_second": tps,
        "browser_cpu_s_while_streaming": cpu_browser,
        "server_cpu_s_while_streaming": cpu_server,
        "updates": len(received),
        "bytes": sum(received),
        "bytes_per_update": sum(received) / max(len(received), 1),
        "median_bytes_per_update": median(received) if received else 0,
        "sizes": received,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,100,500")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--no-all-shown",
        dest="all_shown",
        action="store_false",
        help="skip the run of the largest chat with every message shown (chat_window: 0)",
    )
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # the sizes with the default chat box (newest messages), then the largest with every message
        # shown (chat_window: 0), the way the box was before the window: the same run's baseline
        runs = [(n, None) for n in sizes] + ([(sizes[-1], 0)] if args.all_shown else [])
        for n, window in runs:
            user = make_user_dir(Path(tmp), n, args.tokens, window)
            srv = start_our_server(MODELS_DIR / SMOLLM, Path(tmp), n_ctx=2048, extra=("--user-data-dir", str(user)))
            with servers(srv):
                rows.append(
                    {**measure(browser, srv.url, n, args.reps, srv.pid), "shown": "all" if window == 0 else "window"}
                )
                print(
                    f"  {n} messages ({rows[-1]['shown']}): open {rows[-1]['open_s']:.2f} s, "
                    f"reply {rows[-1]['reply_s']:.2f} s, {rows[-1]['updates']} updates, "
                    f"{rows[-1]['bytes_per_update']:.0f} bytes/update",
                    flush=True,
                )
        browser.close()
    for r in rows:
        r["browser_ms_per_update"] = 1000 * r["browser_cpu_s_while_streaming"] / max(r["updates"], 1)
    small, big = rows[0], rows[len(sizes) - 1]
    summary = {
        "open_ratio": big["open_s"] / small["open_s"],
        "open_target": 3.0,
        "bytes_per_update_ratio": big["median_bytes_per_update"] / small["median_bytes_per_update"],
        "reply_time_ratio": big["reply_s"] / small["reply_s"],
        "stream_time_ratio": big["stream_s"] / small["stream_s"],
        "decode_speed_ratio": small["tokens_per_second"] / big["tokens_per_second"],
        "update_cost_ratio_vs_smallest": big["browser_ms_per_update"] / small["browser_ms_per_update"],
    }
    # The browser's cost per update grows until the chat fills the box's window and stays flat
    # after it: compare the largest chat with the one before it (both longer than the window).
    middle = rows[len(sizes) - 2] if len(sizes) > 2 else small
    summary["update_cost_ratio"] = big["browser_ms_per_update"] / middle["browser_ms_per_update"]
    summary["update_cost_sizes"] = f"{big['messages']} vs {middle['messages']}"
    if args.all_shown:
        every = rows[-1]
        summary["all_shown_stream_time_ratio"] = every["stream_s"] / small["stream_s"]
        summary["all_shown_update_cost_ratio"] = every["browser_ms_per_update"] / big["browser_ms_per_update"]
    summary["met"] = (
        summary["open_ratio"] <= 3.0
        and summary["bytes_per_update_ratio"] <= 1.5
        and summary["update_cost_ratio"] <= 1.25
    )
    print_table(
        rows,
        [
            "messages",
            "shown",
            "open_s",
            "first_text_s",
            "stream_s",
            "generation_s",
            "updates",
            "browser_ms_per_update",
            "median_bytes_per_update",
            "browser_cpu_s_while_streaming",
            "server_cpu_s_while_streaming",
        ],
        "UI",
    )
    print_table(
        [summary],
        [
            "open_ratio",
            "bytes_per_update_ratio",
            "update_cost_sizes",
            "update_cost_ratio",
            "update_cost_ratio_vs_smallest",
            "stream_time_ratio",
            "decode_speed_ratio",
            "all_shown_stream_time_ratio",
            "all_shown_update_cost_ratio",
            "met",
        ],
        "Summary",
    )
    write_results(
        "ui", {"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "summary": summary}, args.out
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
