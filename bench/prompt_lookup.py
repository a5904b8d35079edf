#!/usr/bin/env python3
"""Prompt-lookup decoding: an "edit this paragraph" task and a free chat, with ``prompt_lookup`` off and on.

    .venv/bin/python bench/prompt_lookup.py               # SmolLM2 and gemma-3-270m, --parallel 1 and 4
    .venv/bin/python bench/prompt_lookup.py --quick

Through our server's API (``/v1/chat/completions`` for SmolLM2, which has a chat template;
``/v1/completions`` with a plain prompt for the base model gemma-3-270m), greedy:

  edit  the prompt holds a ~200-word paragraph and asks for it back with one word changed, so
        the answer copies most of the prompt (the model ends it itself, at most ``--edit-tokens``);
  chat  a free story, ``--chat-tokens`` tokens with end-of-text banned (little to copy).

Each with ``prompt_lookup: 0`` and ``prompt_lookup: --draft`` (draft tokens per step) in the
request body, taking turns within each repetition; medians. Tokens/s counts the tokens after
the first over the time after the first (drafting changes generation, not prompt evaluation).
The greedy texts with and without drafts must be identical.

Targets: edit tokens/s with lookup >= 1.5 x without; chat >= 0.95 x (drafts that miss cost
little); identical texts in both.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import urllib.request
from pathlib import Path

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

TARGETS = {"edit": 1.5, "chat": 0.95}
#: Models with a chat template are asked through chat completions; gemma-3-270m is a base model.
CHAT_MODELS = {"smollm"}
PARAGRAPH = (
    "The old mill stood at the bend of the river, where the water slowed and widened into a shallow pool. "
    "For more than a century the miller's family ground wheat and barley there, and farmers from three "
    "valleys brought their harvest on carts pulled by patient horses. In spring the river rose and the great "
    "wheel turned so fast that the whole building trembled; in late summer the water fell so low that the "
    "stones stopped for weeks, and the miller mended sacks, sharpened tools and repaired the roof. Children "
    "from the village came to watch the wheel and to fish for trout below the weir, and the miller's wife "
    "sold bread, honey and apples from a table by the door. When the railway reached the valley, larger "
    "mills in the towns began to grind grain more cheaply, and one by one the farmers stopped coming. The "
    "last miller closed the doors in the winter of a hard year, but he kept the wheel in good order until he "
    "died. Today the mill is a small museum, and on the first Sunday of every month volunteers open the "
    "sluice so that visitors can hear the stones turn once again."
)
EDIT_CHAT = (
    "Here is a paragraph:\n\n{p}\n\nRewrite the paragraph exactly as it is, but write 'stream' instead of "
    "'river'. Change nothing else. Answer with the paragraph only."
)
#: A base model is shown how its answer begins (it rewrote the paragraph freely otherwise, copying little); the
#: paragraph ends at the first blank line.
EDIT_PLAIN = (
    "Original paragraph:\n{p}\n\nThe same paragraph, with the word 'river' replaced by 'stream':\n"
    "The old mill stood at the bend of the stream,"
)
CHAT = "Tell me a long story about a lighthouse keeper and her clever cat."
CHAT_PLAIN = "Here is a long story about a lighthouse keeper and her clever cat.\n\n"


def request(task: str, chat_model: bool, args) -> dict:
    """The keyword arguments of ``timed_stream`` for one task (without the lookup setting)."""
    if task == "edit":
        text = (EDIT_CHAT if chat_model else EDIT_PLAIN).format(p=PARAGRAPH)
        body: dict = {"max_tokens": args.edit_tokens, "extra_body": {} if chat_model else {"stop": ["\n\n"]}}
    else:
        text = CHAT if chat_model else CHAT_PLAIN
        body = {"max_tokens": args.chat_tokens, "extra_body": {"ban_eos_token": True}}
    return body | ({"messages": [{"role": "user", "content": text}]} if chat_model else {"prompt": text})


def check_honoured(url: str, field: str, value: int) -> None:
    """Stop if the server lists ``field`` as ignored (it lists unknown fields instead of refusing them)."""
    body = json.dumps({"prompt": "Hello", "max_tokens": 1, field: value}).encode()
    req = urllib.request.Request(url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        ignored = r.headers.get("x-webui-ignored-fields") or ""
    if field in ignored:
        raise SystemExit(f"the server ignores {field!r} (x-webui-ignored-fields: {ignored}): nothing to measure")


def gen_rate(rec: dict) -> float:
    if rec["error"] or not rec["first"] or not rec["tokens"] or rec["end"] <= rec["first"]:
        return float("nan")
    return (rec["tokens"] - 1) / (rec["end"] - rec["first"])


def bench_server(key: str, parallel: int, workdir: Path, args) -> list[dict]:
    """One server: every task with lookup off and on, taking turns; one row per (task, lookup)."""
    model = MODELS_DIR / MODELS[key]
    extra = ("--parallel", str(parallel), "--cache-type", args.cache_type)
    srv = start_our_server(model, workdir, n_ctx=args.n_ctx, threads=args.threads, extra=extra)
    rows = []
    with servers(srv):
        check_honoured(srv.url, "prompt_lookup", args.draft)
        for task in ("edit", "chat"):
            base = request(task, key in CHAT_MODELS, args)
            settings = {0: base, args.draft: base | {"extra_body": base["extra_body"] | {"prompt_lookup": args.draft}}}
            timed_stream(srv.url, **(base | {"max_tokens": 4}))  # warm-up; its prompt is then cached for both
            recs: dict[int, list[dict]] = {k: [] for k in settings}
            for rep in range(args.reps):
                for lookup in list(settings) if rep % 2 == 0 else list(reversed(settings)):
                    recs[lookup].append(timed_stream(srv.url, **settings[lookup]))
            for lookup, rs in recs.items():
                rows.append(
                    {
                        "model": model.name,
                        "parallel": parallel,
                        "task": task,
                        "prompt_lookup": lookup,
                        "tokens/s": median(gen_rate(r) for r in rs),
                        "TTFT s": median(r["ttft_s"] for r in rs),
                        "tokens": rs[-1]["tokens"],
                        "prompt tokens": rs[-1]["prompt_tokens"],
                        "errors": [r["error"] for r in rs if r["error"]],
                        "texts": sorted({r["text"] for r in rs}),
                    }
                )
            off, on = rows[-2], rows[-1]
            print(
                f"  {task}: {off['tokens/s']:.1f} -> {on['tokens/s']:.1f} tokens/s "
                f"({on['tokens']} tokens, identical: {off['texts'] == on['texts']})",
                flush=True,
            )
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """Lookup on / off per (model, parallel, task), with the target and whether the texts match."""
    out = []
    for off, on in zip(rows[::2], rows[1::2], strict=True):
        ratio = on["tokens/s"] / off["tokens/s"]
        same = off["texts"] == on["texts"] and len(off["texts"]) == 1
        target = TARGETS[off["task"]]
        out.append(
            {
                "model": off["model"],
                "parallel": off["parallel"],
                "task": off["task"],
                "off tokens/s": off["tokens/s"],
                "on tokens/s": on["tokens/s"],
                "ratio": ratio,
                "target": target,
                "identical": same,
                "common prefix chars": common_prefix(off["texts"][0], on["texts"][0]) if not same else None,
                "met": ratio >= target and same and not off["errors"] and not on["errors"],
            }
        )
    return out


def common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    from webui.loaders.llamacpp import default_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smollm,gemma", help="Comma list of smollm, gemma.")
    p.add_argument("--parallel", default="1,4", help="Comma list of --parallel values, one server each.")
    p.add_argument("--draft", type=int, default=8, help="prompt_lookup when on: draft tokens per step.")
    p.add_argument("--edit-tokens", type=int, default=400, help="max_tokens of the edit task (the model ends it).")
    p.add_argument("--chat-tokens", type=int, default=128, help="Tokens of the free chat (end-of-text banned).")
    p.add_argument("--reps", type=int, default=3, help="Repetitions of each measurement (median).")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: physical cores).")
    p.add_argument("--cache-type", default="fp16", help="The servers' KV cache type (q8_0 or bf16: exact texts).")
    p.add_argument("--quick", action="store_true", help="SmolLM2, --parallel 1, 64 edit and 32 chat tokens, once.")
    p.add_argument("--out", type=Path, help="Results folder (default bench/results).")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.parallel, args.edit_tokens, args.chat_tokens, args.reps = "smollm", "1", 64, 32, 1
    args.threads = args.threads or default_threads()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-lookup-") as tmp:
        for key in [m.strip() for m in args.models.split(",") if m.strip()]:
            for par in (int(x) for x in args.parallel.split(",")):
                print(f"\n== {key}, --parallel {par}, prompt_lookup 0 vs {args.draft} ==", flush=True)
                rows += bench_server(key, par, Path(tmp), args)
    summary = ratios(rows)
    print_table(rows, ["model", "parallel", "task", "prompt_lookup", "tokens/s", "TTFT s", "tokens"], "Medians")
    print_table(summary, [k for k in summary[0] if k != "model"], "Lookup on / off")
    write_results(
        "prompt_lookup" if args.cache_type == "fp16" else f"prompt_lookup-{args.cache_type}",
        {"settings": vars(args) | {"out": str(args.out)}, "targets": TARGETS, "summary": summary, "rows": rows},
        args.out,
    )
    if not args.no_plots and summary and args.cache_type == "fp16":
        groups = {
            f"{r['model'].split('-')[0]} {r['task']} p{r['parallel']}": {
                "off": r["off tokens/s"],
                f"prompt_lookup {args.draft}": r["on tokens/s"],
            }
            for r in summary
        }
        plot_bars(
            IMG_DIR / "prompt-lookup.png", "Generation speed with prompt lookup (higher is better)", "tokens/s", groups
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
