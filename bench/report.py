#!/usr/bin/env python3
"""Write the latest benchmark figures from ``bench/results/*.json`` into docs/performance.md.

    .venv/bin/python bench/report.py

Replaces the text between the ``<!-- figures:start -->`` and ``<!-- figures:end -->``
markers; everything else in the document is left as written.
"""

from __future__ import annotations

import json
import re

from common import PROJECT_DIR, RESULTS_DIR

DOC = PROJECT_DIR / "docs" / "performance.md"


def load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def yes(ok: bool) -> str:
    return "✅ met" if ok else "❌ not met"


def streaming(d: dict) -> list[str]:
    out = [
        f"### Streaming overhead ({d['date']}, load average {d['machine'].get('load_average_1_5_15')})",
        "",
        f"{d['settings']['reps']} repetitions of {d['settings']['tokens']} tokens, greedy, medians.",
        "",
        "| model | path | tokens/s | TTFT (ms) | × raw tokens/s |",
        "|---|---|---:|---:|---:|",
    ]
    for r in d["results"]:
        paths = r["paths"]
        base = paths.get("raw") or paths.get("hf raw")
        for k, v in paths.items():
            out.append(
                f"| {r['model']} | {k} | {v['tokens_per_s']:.1f} | {v['ttft_s'] * 1000:.0f} | "
                f"{v['tokens_per_s'] / base['tokens_per_s']:.3f} |"
            )
    out += ["", "| model | ratio | tokens/s ratio | target | TTFT ratio | |", "|---|---|---:|---:|---:|---|"]
    for r in d["ratios"]:
        out.append(
            f"| {r['model']} | {r['ratio']} | {r['tokens/s ratio']:.3f} | ≥ {r['target']} | "
            f"{r['TTFT ratio']:.2f} | {yes(r['met'])} |"
        )
    return out + ["", "![tokens/s by path](img/streaming-tokens.png)", "![TTFT by path](img/streaming-ttft.png)", ""]


def long_chat(d: dict) -> list[str]:
    out = [
        f"### Long chats ({d['date']}, load average {d['machine'].get('load_average_1_5_15')})",
        "",
        "| run | turn 30 / turn 2 TTFT | last / turn 2 | truncation from turn | median TTFT after / before | "
        "target | |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for s in d["summary"]:

        def f(k):
            v = s.get(k)
            return f"{v:.2f}" if isinstance(v, float) else ("" if v is None else str(v))

        target = s.get("target", "baseline (same prompts)")
        verdict = yes(s["met"]) if "met" in s else ""
        out.append(
            f"| {s['label']} | {f('turn30_over_turn2')} | {f('last_over_turn2')} | "
            f"{f('truncation_from_turn')} | {f('after_over_before')} | {target} | {verdict} |"
        )
    raw = next((s for s in d["summary"] if "ours_over_raw_ttft_turn30" in s), None)
    if raw is not None:
        out += [
            "",
            f"Raw llama-cpp-python given the same prompts: turn 30 / turn 2 TTFT "
            f"**{raw['turn30_over_turn2']:.2f}**; ours / raw TTFT, median over turns 2-30: "
            f"**{raw.get('ours_over_raw_ttft_median', float('nan')):.2f}** (turn 30 alone: "
            f"{raw['ours_over_raw_ttft_turn30']:.2f}).",
        ]
    return out + [
        "",
        "![TTFT per turn](img/long-chat-ttft.png)",
        "![prompt tokens per turn](img/long-chat-prompt.png)",
        "",
    ]


def concurrency(d: dict) -> list[str]:
    s = d["summary"]
    return [
        f"### Concurrency ({d['date']}, load average {d['machine'].get('load_average_1_5_15')})",
        "",
        f"{s['clients']} clients × {s['tokens_each']} tokens; one hangs up after 3 tokens.",
        "",
        "| one client alone | all clients together (aggregate) | ratio | FIFO | all finished | cancelled | |",
        "|---:|---:|---:|---|---|---:|---|",
        f"| {s['single_tokens_per_s']:.1f} tokens/s | {s['aggregate_tokens_per_s']:.1f} tokens/s | "
        f"{s['ratio']:.3f} (≥ 0.9) | {s['fifo']} | {s['all_finished']} | {s['cancelled']} | {yes(s['met'])} |",
        "",
    ]


def memory(d: dict) -> list[str]:
    s = d["summary"]
    growth = ", ".join(f"{k.split('.')[0]} {v:+.0f} MB" for k, v in s["growth_mb"].items())
    return [
        f"### Memory ({d['date']})",
        "",
        "| bare `Llama` process | server.py (UI + API + model) | overhead | growth over the loads | "
        "freed by unload | |",
        "|---:|---:|---:|---|---:|---|",
        f"| {s['bare_llama_rss_mb']:.0f} MB | {s['server_rss_mb']:.0f} MB | {s['overhead_mb']:.0f} MB (< 400) | "
        f"{growth} (< 50 each) | {s['unload_freed_mb']:.0f} MB | {yes(s['met'])} |",
        "",
        "![RSS after each load](img/memory-loads.png)",
        "",
    ]


def ui(d: dict) -> list[str]:
    out = [
        f"### UI ({d['date']}, load average {d['machine'].get('load_average_1_5_15')})",
        "",
        "| messages in the chat | shown in the box | page open (s) | Enter to first text (s) "
        "| first text to done (s) | model's tokens/s | updates | median bytes per update "
        "| browser CPU ms per update |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in d["rows"]:
        shown = "all" if r.get("shown") == "all" else "newest 60"
        out.append(
            f"| {r['messages']} | {shown} | {r['open_s']:.2f} | {r['first_text_s']:.2f} | "
            f"{r['stream_s']:.2f} | {r.get('tokens_per_second', 0):.1f} | {r['updates']} | "
            f"{r['median_bytes_per_update']:.0f} | {r.get('browser_ms_per_update', 0):.1f} |"
        )
    s = d["summary"]
    line = (
        f"Page open 500 / 10: **{s['open_ratio']:.2f}** (target ≤ 3); bytes per update 500 / 10: "
        f"**{s['bytes_per_update_ratio']:.2f}**; browser CPU per update {s.get('update_cost_sizes', '')}: "
        f"**{s.get('update_cost_ratio', float('nan')):.2f}** (target ≤ 1.25; 500 / 10: "
        f"{s.get('update_cost_ratio_vs_smallest', float('nan')):.2f}). "
    )
    if "all_shown_update_cost_ratio" in s:
        line += (
            f"With every message shown, the 500-message chat costs the browser "
            f"**{s['all_shown_update_cost_ratio']:.1f} ×** as much per update and streams "
            f"{s['all_shown_stream_time_ratio']:.1f} × as long as the 10-message one. "
        )
    out += ["", line + yes(s["met"]), ""]
    return out


def main() -> int:
    parts = []
    for name, fn in (
        ("streaming", streaming),
        ("long_chat", long_chat),
        ("concurrency", concurrency),
        ("memory", memory),
        ("ui", ui),
    ):
        d = load(name)
        if d:
            parts += fn(d)
    text = DOC.read_text()
    block = "<!-- figures:start -->\n" + "\n".join(parts) + "\n<!-- figures:end -->"
    text = re.sub(r"<!-- figures:start -->.*<!-- figures:end -->", lambda m: block, text, flags=re.S)
    DOC.write_text(text)
    print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
