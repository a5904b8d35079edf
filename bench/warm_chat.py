#!/usr/bin/env python3
"""Warm chats: time to first token of a long chat's next turn after a restart, with and without saved states.

    .venv/bin/python bench/warm_chat.py                  # SmolLM2, a ~3,000-token chat, 3 repetitions
    .venv/bin/python bench/warm_chat.py --quick

Each repetition, in a new user data folder:

  1. a server with ``--warm-cache-mb 512`` gets a long chat (``--turns`` earlier exchanges of a
     paragraph each, about 3,100 tokens with the default 16, then a question) on
     ``/v1/chat/completions``; then it stays idle ``--idle-wait`` seconds, so it saves the
     chat's state (a server saves prompts of 256 tokens or more), and stops;
  2. warm: a server on the same folder, ``--warm-cache-mb 512``, gets the same chat plus its
     reply and one new user message: TTFT (request to first text, greedy);
  3. cold: the same after a restart with ``--warm-cache-mb 0`` (the whole prompt evaluated).

Target: warm TTFT <= 0.2 x cold TTFT (medians over the repetitions). Also recorded: the TTFT
of step 1 (a fresh server, nothing saved yet), the prompt's tokens, and what the user data
folder grew by from the end of step 1's reply to its server's stop (the saved state).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from batch_limit import MODELS
from common import (
    IMG_DIR,
    MODELS_DIR,
    median,
    plot_bars,
    print_table,
    servers,
    start_our_server,
    timed_stream,
    write_results,
)

TARGET = 0.2
TOPICS = ["a harbour town", "a mountain railway", "a night market", "an orchard", "a glass workshop", "a river ferry"]
USER = (
    "Turn {n}. Please describe {topic} for a travel guide: who works there, what a visitor sees in the early "
    "morning, what it sounds and smells like at noon, and one thing to try before leaving in the evening."
)
ASSISTANT = (
    "In {topic}, the day starts before sunrise. Workers open shutters, sweep the stones and carry crates of "
    "fresh goods while the first visitors arrive with coffee in their hands. By noon the place is loud with "
    "voices, bells and engines, and the air smells of bread, salt, smoke and wet rope. Local guides tell old "
    "stories about floods, fires and festivals, and every family seems to have a recipe of its own. Before "
    "you leave in the evening, sit by the water, order the dish of the day and watch the lights come on one "
    "by one (turn {n})."
)
QUESTION = "Which of these places would you visit first with two children, and why? Answer in two sentences."
FOLLOW_UP = "And which would you pick for a rainy day instead? One sentence."


def history(turns: int) -> list[dict[str, str]]:
    """``turns`` user/assistant exchanges, about 190 tokens each with SmolLM2's template, then the question."""
    msgs = [{"role": "system", "content": "You are a friendly, concise travel assistant."}]
    for n in range(1, turns + 1):
        topic = TOPICS[n % len(TOPICS)]
        msgs += [
            {"role": "user", "content": USER.format(n=n, topic=topic)},
            {"role": "assistant", "content": ASSISTANT.format(n=n, topic=topic)},
        ]
    return [*msgs, {"role": "user", "content": QUESTION}]


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def one_cycle(model: Path, workdir: Path, rep: int, args) -> dict:
    """Steps 1-3 of the docstring in a new user data folder."""
    user = workdir / f"user-{rep}"
    user.mkdir(parents=True)

    def server(cache_mb: int):
        return start_our_server(
            model,
            workdir,
            n_ctx=args.n_ctx,
            threads=args.threads,
            extra=("--warm-cache-mb", str(cache_mb)),
            user_dir=user,
        )

    chat = history(args.turns)
    srv = server(args.cache_mb)
    with servers(srv):
        first = timed_stream(srv.url, messages=chat, max_tokens=args.reply_tokens)
        before_idle = folder_mb(user)
        time.sleep(args.idle_wait)
    saved_mb = folder_mb(user) - before_idle  # after the stop: whether saved when idle or when stopping
    chat += [{"role": "assistant", "content": first["text"]}, {"role": "user", "content": FOLLOW_UP}]
    out: dict[str, Any] = {"first": first, "saved_mb": saved_mb}
    for label, cache_mb in (("warm", args.cache_mb), ("cold", 0)):  # cold last: a 0 MB cache may drop the saved state
        srv = server(cache_mb)
        with servers(srv):
            out[label] = timed_stream(srv.url, messages=chat, max_tokens=args.reply_tokens)
    row = {
        "rep": rep,
        "prompt tokens": out["warm"]["prompt_tokens"],
        "first send TTFT s": first["ttft_s"],
        "warm TTFT s": out["warm"]["ttft_s"],
        "cold TTFT s": out["cold"]["ttft_s"],
        "saved MB": saved_mb,
        "same reply": out["warm"]["text"] == out["cold"]["text"],
        "errors": [r["error"] for r in (first, out["warm"], out["cold"]) if r["error"]],
    }
    print(
        f"  rep {rep}: {row['prompt tokens']} prompt tokens, TTFT warm {row['warm TTFT s'] or float('nan'):.3f} s, "
        f"cold {row['cold TTFT s'] or float('nan'):.3f} s, saved {saved_mb:.1f} MB, errors {row['errors']}",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    from webui.loaders.llamacpp import default_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smollm", help="Comma list of smollm, gemma (needs a chat template).")
    p.add_argument("--turns", type=int, default=16, help="Earlier exchanges in the chat (~190 tokens each).")
    p.add_argument("--n-ctx", type=int, default=4096, help="--ctx-size of the servers (fits the whole chat).")
    p.add_argument("--cache-mb", type=int, default=512, help="--warm-cache-mb of the warm servers.")
    p.add_argument("--idle-wait", type=float, default=5.0, help="Seconds the first server stays idle (saving).")
    p.add_argument("--reply-tokens", type=int, default=16, help="max_tokens of each reply.")
    p.add_argument("--reps", type=int, default=3, help="Repetitions of the whole cycle (median).")
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: physical cores).")
    p.add_argument("--quick", action="store_true", help="SmolLM2, a ~800-token chat, once.")
    p.add_argument("--out", type=Path, help="Results folder (default bench/results).")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.turns, args.n_ctx, args.reps, args.reply_tokens = "smollm", 5, 2048, 1, 8
    args.threads = args.threads or default_threads()
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        for key in [m.strip() for m in args.models.split(",") if m.strip()]:
            name = MODELS[key]
            print(f"\n== {key}: {args.turns} earlier turns, --warm-cache-mb {args.cache_mb} vs 0 ==", flush=True)
            runs[name] = [one_cycle(MODELS_DIR / name, Path(tmp) / f"{key}", rep, args) for rep in range(args.reps)]
    summary = []
    for name, rows in runs.items():
        warm, cold = median(r["warm TTFT s"] for r in rows), median(r["cold TTFT s"] for r in rows)
        ratio = warm / cold
        summary.append(
            {
                "model": name,
                "prompt tokens": rows[-1]["prompt tokens"],
                "warm TTFT s": warm,
                "cold TTFT s": cold,
                "first send TTFT s": median(r["first send TTFT s"] for r in rows),
                "warm/cold": ratio,
                "target": f"<= {TARGET}",
                "saved MB": median(r["saved MB"] for r in rows),
                "met": ratio <= TARGET and not any(r["errors"] for r in rows),
            }
        )
    print_table(summary, list(summary[0]), "Warm chat after a restart")
    write_results(
        "warm_chat",
        {"settings": vars(args) | {"out": str(args.out)}, "target": TARGET, "summary": summary, "runs": runs},
        args.out,
    )
    if not args.no_plots and summary:
        groups = {
            s["model"].split(".")[0]: {
                "first send (fresh server)": s["first send TTFT s"],
                "restart, --warm-cache-mb 0": s["cold TTFT s"],
                f"restart, --warm-cache-mb {args.cache_mb}": s["warm TTFT s"],
            }
            for s in summary
        }
        plot_bars(IMG_DIR / "warm-chat-ttft.png", "Next-turn TTFT of a long chat after a restart", "TTFT (s)", groups)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
