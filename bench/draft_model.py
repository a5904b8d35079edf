#!/usr/bin/env python3
"""Draft model (speculative decoding): a story and an "edit this paragraph" task, with the draft off and on.

    .venv/bin/python bench/draft_model.py            # 200-token story, edit task, 3 repetitions
    .venv/bin/python bench/draft_model.py --quick    # 48 tokens each, once

The pair: SmolLM2-135M-Instruct as F16 (the main model, made by ``tests/draft_models.py``) drafted for by
its Q4_1 file (the same tokenizer), both linked into one temporary models folder. Greedy, two tasks:

  chat  a free story, ``--chat-tokens`` tokens with end-of-text banned (little is predictable);
  edit  bench/prompt_lookup.py's paragraph, asked back with one word changed (the model ends it itself,
        at most ``--edit-tokens``): the answer copies the prompt, so the draft is most often right.

Two parts:

  1. In process (``ModelManager`` + ``Generator``, loaded on the generation thread as the app does):
     the F16 model with ``{"draft_model": "", "parallel": 1}``, then with the Q4_1 file as its draft,
     then the Q4_1 model alone. Around each request the slot engine's counters are read
     (``backend.engine.counters``): main-model ``decodes`` (prompt chunks included), draft tokens
     ``drafted`` and ``accepted``. Reported: acceptance = accepted / drafted, main-model decodes per
     generated token, and each model's milliseconds per token (the draft's own cost).
  2. Through the server (``/v1/chat/completions``, streamed, ``--parallel 1``): three servers one after
     the other: the F16 model, the F16 model with ``--draft-model SmolLM2-135M-Instruct.Q4_1.gguf
     --draft-max N``, and the Q4_1 model alone (the draft's own speed, for reference). Each task once
     to warm up, then the tasks in turn, ``--reps`` times; medians. Tokens/s counts the tokens after
     the first over the time after the first; TTFT is the whole wait for the first text (with the draft
     it includes the draft model reading the prompt the first time it guesses).

The greedy texts with and without the draft are compared (``same_text``): the draft only decides how
many of the main model's own tokens one decode yields. It is recorded, not required: llama.cpp computes a
lone token of F16 weights slightly otherwise than several, so an F16 main model's text can move with the
drafts (quantized weights do not; tests/integration/test_draft_model.py proves it with a Q8_0 main model).

What to expect here, and why: no speed-up. A draft pays when one main-model decode of the next token plus
a few drafts costs about what a decode of one token does, and the draft's tokens cost much less, i.e.
when the main model is several times slower per token than the draft (a 7B model drafted for by a 0.5B
one of its family). A 135M model decodes a token in ~9-12 ms on this 2-core CPU whatever its weight type
(F16 or Q4_1: the time goes to the per-token work, not to reading the weights), so each drafted token
costs about as much as the main model's token it saves. The first full run (bench/results/draft_model.json):
the story took 2.6 s for 200 tokens without the draft and 3.7 s with it (0.69x), although the main model's
decodes dropped from 201 to 100 and 88% of the drafts were accepted; the edit task 0.86x with 96% accepted
and a quarter of the decodes. F16 took 12 ms per token, Q4_1 8.5 ms. The test models cannot show the
option paying; the benchmark records what it costs and that the text stays the same. No target.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    IMG_DIR,
    MODELS_DIR,
    SMOLLM,
    median,
    plot_bars,
    print_table,
    servers,
    start_our_server,
    timed_stream,
    write_results,
)
from prompt_lookup import CHAT, EDIT_CHAT, PARAGRAPH, gen_rate

from draft_models import SMOLLM_F16, ensure_smollm_f16  # in tests/, on the path once common is imported

TASKS = ("chat", "edit")
#: The three settings of both parts: (label, model file, draft model file or "").
SETTINGS = (("off", SMOLLM_F16, ""), ("on", SMOLLM_F16, SMOLLM), ("draft alone", SMOLLM, ""))


def models_folder(tmp: Path) -> Path:
    """One models folder holding the main model and its draft (the server looks for the draft there)."""
    folder = tmp / "models"
    folder.mkdir()
    (folder / SMOLLM_F16).symlink_to(ensure_smollm_f16())
    (folder / SMOLLM).symlink_to((MODELS_DIR / SMOLLM).resolve())
    return folder


def task_request(task: str, args) -> tuple[list[dict[str, str]], int, dict[str, Any]]:
    """(messages, max_tokens, extra sampling fields) of one task."""
    if task == "edit":
        return [{"role": "user", "content": EDIT_CHAT.format(p=PARAGRAPH)}], args.edit_tokens, {}
    return [{"role": "user", "content": CHAT}], args.chat_tokens, {"ban_eos_token": True}


# --- 1. in process: the engine's counters ------------------------------------------------------------


def in_process(folder: Path, args) -> list[dict[str, Any]]:
    """Each setting loaded in turn, each task ``--reps`` times; one row per (setting, task)."""
    from webui.generation.scheduler import Generator
    from webui.models.manager import ModelManager
    from webui.params import LoadOptions

    models = ModelManager(folder, LoadOptions(n_ctx=args.n_ctx, threads=args.threads, parallel=1))
    gen = Generator(models)
    rows = []
    try:
        for label, model, draft in SETTINGS:
            options = {"draft_model": draft, "draft_max": args.draft_max, "parallel": 1}
            loaded = gen.call(lambda model=model, options=options: models.load(model, options=options))
            if loaded.backend.metadata.get("draft_model", "") != draft:
                raise SystemExit(f"{model} was loaded with draft {loaded.backend.metadata.get('draft_model')!r}")
            prompts = {task: render_prompt(loaded.backend.chat_template, task, args) for task in TASKS}
            for task in TASKS:  # warm-up: the first decodes of a new model build their graphs
                run_in_process(gen, loaded.backend.engine, prompts[task][0], 4, {})
            recs: dict[str, list[dict[str, Any]]] = {task: [] for task in TASKS}
            for _ in range(args.reps):
                for task in TASKS:
                    recs[task].append(run_in_process(gen, loaded.backend.engine, *prompts[task]))
            rows += [engine_row(label, model, task, recs[task]) for task in TASKS]
            for row in rows[-len(TASKS) :]:
                print(
                    f"  {label:11} {row['task']}: {row['tokens']} tokens in {row['seconds']:.2f} s, "
                    f"{row['ms/token']:.1f} ms/token, {row['decodes']} decodes, "
                    f"{row['accepted']}/{row['drafted']} drafts kept",
                    flush=True,
                )
    finally:
        models.unload()
    return rows


def render_prompt(chat_template: str, task: str, args) -> tuple[str, int, dict[str, Any]]:
    """The task's prompt as the model's chat template writes it, its max_tokens and extra fields."""
    from webui.templates.chat_template import ChatTemplate

    messages, max_tokens, extra = task_request(task, args)
    text = ChatTemplate.compile(chat_template, "gguf").render(messages, add_generation_prompt=True)
    return text, max_tokens, extra


def run_in_process(gen: Any, engine: Any, prompt: str, max_tokens: int, extra: dict[str, Any]) -> dict[str, Any]:
    """One greedy request through the generation queue: its timing, text and the counters it moved."""
    from webui.params import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, do_sample=False, seed=1, **extra)
    before = dict(engine.counters)
    start = time.perf_counter()
    job = gen.submit(prompt, params)
    text = "".join(chunk.text for chunk in job)
    seconds = time.perf_counter() - start
    stats = job.stats
    moved = {k: engine.counters[k] - before[k] for k in ("decodes", "drafted", "accepted")}
    return {
        "seconds": seconds,
        "tokens": stats.completion_tokens,
        "ttft_s": stats.ttft_seconds,
        "tokens/s": stats.tokens_per_second,
        "text": text,
        **moved,
    }


def engine_row(label: str, model: str, task: str, recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of one (setting, task); counters from the last repetition (greedy: every one is the same)."""
    last = recs[-1]
    rate = median(r["tokens/s"] for r in recs)
    return {
        "setting": label,
        "model": model,
        "task": task,
        "tokens": last["tokens"],
        "seconds": median(r["seconds"] for r in recs),
        "tokens/s": rate,
        "ms/token": 1000 / rate if rate else float("nan"),
        "TTFT s": median(r["ttft_s"] for r in recs),
        "decodes": last["decodes"],
        "decodes/token": last["decodes"] / last["tokens"] if last["tokens"] else float("nan"),
        "drafted": last["drafted"],
        "accepted": last["accepted"],
        "acceptance": last["accepted"] / last["drafted"] if last["drafted"] else None,
        "texts": sorted({r["text"] for r in recs}),
    }


# --- 2. through the server: what a client sees ---------------------------------------------------------


def through_server(folder: Path, workdir: Path, args) -> list[dict[str, Any]]:
    """One server per setting, one after the other; one row per (setting, task)."""
    rows = []
    for label, model, draft in SETTINGS:
        extra = ("--parallel", "1")
        if draft:
            extra += ("--draft-model", draft, "--draft-max", str(args.draft_max))
        print(f"  server: {model}{' + draft ' + draft if draft else ''}", flush=True)
        srv = start_in_folder(folder, model, workdir, extra, args)
        with servers(srv):
            memory_mb = check_loaded(srv, model)
            requests = {task: stream_kwargs(task, args) for task in TASKS}
            for task in TASKS:
                timed_stream(srv.url, **(requests[task] | {"max_tokens": 4}))  # warm-up
            recs: dict[str, list[dict[str, Any]]] = {task: [] for task in TASKS}
            for _ in range(args.reps):
                for task in TASKS:
                    recs[task].append(timed_stream(srv.url, **requests[task]))
        for task in TASKS:
            rs = recs[task]
            rows.append(
                {
                    "setting": label,
                    "model": model,
                    "task": task,
                    "tokens/s": median(gen_rate(r) for r in rs),
                    "TTFT s": median(r["ttft_s"] for r in rs),
                    "seconds": median(r["end"] - r["start"] for r in rs),
                    "tokens": rs[-1]["tokens"],
                    "prompt tokens": rs[-1]["prompt_tokens"],
                    "errors": [r["error"] for r in rs if r["error"]],
                    "texts": sorted({r["text"] for r in rs}),
                    "memory_mb": memory_mb,
                }
            )
            print(f"    {task}: {rows[-1]['tokens/s']:.1f} tokens/s, {rows[-1]['tokens']} tokens", flush=True)
    return rows


def start_in_folder(folder: Path, model: str, workdir: Path, extra: tuple[str, ...], args) -> Any:
    """A server whose models folder is ``folder``, ``model`` loaded.

    By name with ``--model-dir``, not as a path: the server resolves a ``--model`` path, links included, and
    takes the folder of the file the link points to as the models folder, where the draft is not.
    """
    extra = ("--model-dir", str(folder), *extra)
    return start_our_server(Path(model), workdir, n_ctx=args.n_ctx, threads=args.threads, extra=extra)


def check_loaded(srv: Any, model: str) -> float:
    """Stop unless the server loaded ``model`` (a draft model that cannot be loaded fails the whole load);
    the app's memory figure for it (with its draft), in MB."""
    import json
    import urllib.request

    health = srv.health()
    if health.get("model") != model:
        raise SystemExit(f"the server did not load {model} ({health}):\n{srv.log.read_text()[-2000:]}")
    with urllib.request.urlopen(srv.url + "/v1/models", timeout=30) as r:
        entries = {e["id"]: e for e in json.load(r)["data"]}
    return entries[model]["memory_bytes"] / 1e6


def stream_kwargs(task: str, args) -> dict[str, Any]:
    messages, max_tokens, extra = task_request(task, args)
    return {"messages": messages, "max_tokens": max_tokens, "extra_body": extra}


# --- the summary -----------------------------------------------------------------------------------


def summarise(engine_rows: list[dict[str, Any]], server_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task: draft on / off through the server and in process, the counters, and whether the texts match."""
    out = []
    for task in TASKS:
        eng = {r["setting"]: r for r in engine_rows if r["task"] == task}
        srv = {r["setting"]: r for r in server_rows if r["task"] == task}
        off, on, alone = srv["off"], srv["on"], srv["draft alone"]
        out.append(
            {
                "task": task,
                "tokens": on["tokens"],
                "off tokens/s": off["tokens/s"],
                "on tokens/s": on["tokens/s"],
                "ratio": on["tokens/s"] / off["tokens/s"],
                "draft alone tokens/s": alone["tokens/s"],
                "off TTFT s": off["TTFT s"],
                "on TTFT s": on["TTFT s"],
                "same_text": same_text(off, on) and same_text(eng["off"], eng["on"]),
                "same_text_server": same_text(off, on),
                "same_text_in_process": same_text(eng["off"], eng["on"]),
                "in-process ratio": eng["on"]["tokens/s"] / eng["off"]["tokens/s"],
                "acceptance": eng["on"]["acceptance"],
                "drafted": eng["on"]["drafted"],
                "accepted": eng["on"]["accepted"],
                "decodes off": eng["off"]["decodes"],
                "decodes on": eng["on"]["decodes"],
                "decodes/token off": eng["off"]["decodes/token"],
                "decodes/token on": eng["on"]["decodes/token"],
                "main ms/token": eng["off"]["ms/token"],
                "draft ms/token": eng["draft alone"]["ms/token"],
                "main / draft time": eng["off"]["ms/token"] / eng["draft alone"]["ms/token"],
                "draft memory MB": on["memory_mb"] - off["memory_mb"],  # the app's figure for the draft
                "errors": off["errors"] + on["errors"] + alone["errors"],
            }
        )
    return out


def same_text(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Every repetition of both gave one and the same text."""
    return len(a["texts"]) == 1 and a["texts"] == b["texts"]


def main(argv: list[str] | None = None) -> int:
    from webui.loaders.llamacpp import default_threads

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chat-tokens", type=int, default=200, help="Tokens of the story (end-of-text banned).")
    p.add_argument("--edit-tokens", type=int, default=300, help="max_tokens of the edit task (the model ends it).")
    p.add_argument("--draft-max", type=int, default=4, help="Most draft tokens per step (--draft-max).")
    p.add_argument("--reps", type=int, default=3, help="Repetitions of each measurement (median).")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=0, help="llama.cpp threads (default: physical cores).")
    p.add_argument("--quick", action="store_true", help="48 tokens for each task, once.")
    p.add_argument("--out", type=Path, help="Results folder (default bench/results).")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.chat_tokens, args.edit_tokens, args.reps = 48, 48, 1
    args.threads = args.threads or default_threads()
    with tempfile.TemporaryDirectory(prefix="bench-draft-") as tmp:
        folder = models_folder(Path(tmp))
        print(f"\n== in process: {SMOLLM_F16} without and with {SMOLLM} as its draft, and the draft alone ==")
        engine_rows = in_process(folder, args)
        print("\n== through the server, --parallel 1 ==")
        server_rows = through_server(folder, Path(tmp), args)
    summary = summarise(engine_rows, server_rows)
    print_table(
        engine_rows,
        ["setting", "task", "tokens", "seconds", "tokens/s", "ms/token", "decodes", "drafted", "accepted"],
        "In process (counters of the last repetition)",
    )
    print_table(server_rows, ["setting", "task", "tokens", "tokens/s", "TTFT s", "seconds"], "Through the server")
    print_table(
        summary,
        ["task", "off tokens/s", "on tokens/s", "ratio", "draft alone tokens/s", "acceptance", "decodes/token on"],
        "Draft on / off",
    )
    print("same_text: " + ", ".join(f"{r['task']} {r['same_text']}" for r in summary))
    write_results(
        "draft_model",
        {
            "settings": vars(args) | {"out": str(args.out), "main_model": SMOLLM_F16, "draft_model": SMOLLM},
            "summary": summary,
            "in_process": engine_rows,
            "server": server_rows,
        },
        args.out,
    )
    if not args.no_plots:
        groups = {
            r["task"]: {
                "F16 alone": r["off tokens/s"],
                "F16 + Q4_1 draft": r["on tokens/s"],
                "Q4_1 alone (the draft)": r["draft alone tokens/s"],
            }
            for r in summary
        }
        plot_bars(IMG_DIR / "draft-model.png", "SmolLM2-135M with a draft model (higher is better)", "tokens/s", groups)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
