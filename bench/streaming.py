#!/usr/bin/env python3
"""Streaming overhead: our paths against raw llama-cpp-python and its own server, in one run.

    .venv/bin/python bench/streaming.py                  # SmolLM2, gemma-3-270m and the transformers checkpoint
    .venv/bin/python bench/streaming.py --models smollm --reps 3 --tokens 64

For each GGUF model, greedy decoding of a fixed number of tokens (end-of-text
banned, so every path makes exactly as many tokens) through:

  (a) raw   llama-cpp-python ``create_completion(stream=True)`` on a ``Llama``
  (b) ours  our generation service (``Generator`` over our llama.cpp loader)
  (c) api   our ``/v1/chat/completions`` through the ``openai`` client (server.py --api)
  (d) peer  llama-cpp-python's own server (``python -m llama_cpp.server``) through the same client

and for the transformers checkpoint: raw ``model.generate()`` with a
``TextIteratorStreamer`` against our generation service on our transformers loader.
The paths take turns within each repetition; medians over the repetitions.
Tokens/s counts generated tokens after the first over the time after the first;
TTFT is request start to first text.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from common import (
    GEMMA,
    IMG_DIR,
    MODELS_DIR,
    SMOLLM,
    median,
    plot_bars,
    print_table,
    servers,
    start_our_server,
    start_peer_server,
    write_results,
)

SYSTEM = "You are a helpful assistant who writes long, detailed answers."
QUESTION = "[run {i}] Describe, step by step, how a bicycle works, covering the frame, wheels, gears and brakes."
TARGETS = {"ours/raw": 0.97, "api/raw": 0.97, "api/peer": 1.0, "hf ours/raw": 0.95}


def messages(i: int) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION.format(i=i)}]


def timed(make_stream) -> tuple[float | None, int, float]:
    """Call ``make_stream()`` (text pieces) and iterate it; returns (TTFT, pieces, seconds first to last piece).

    The clock starts before the call: an HTTP client's ``create()`` already waits for the response headers.
    """
    start = time.perf_counter()
    stream = make_stream()
    first = last = None
    n = 0
    for piece in stream:
        if not piece:
            continue
        now = time.perf_counter()
        if first is None:
            first = now
        last = now
        n += 1
    if first is None or last is None:
        return None, None, 0
    return first - start, n, last - first


def rate(n_tokens: int, first_to_last: float) -> float:
    return (n_tokens - 1) / first_to_last if first_to_last > 0 else float("nan")


class Engine:
    """A path measured in its own process (bench/engine_worker.py)."""

    def __init__(self, mode: str, path: Path, n_ctx: int, threads: int) -> None:
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("engine_worker.py")),
                mode,
                str(path),
                str(n_ctx),
                str(threads),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self.proc.stdout.readline())["ready"]

    def run(self, prompt: str, tokens: int, eog: list[int]) -> tuple:
        self.proc.stdin.write(json.dumps({"prompt": prompt, "tokens": tokens, "eog": eog}) + "\n")
        self.proc.stdin.flush()
        r = json.loads(self.proc.stdout.readline())
        return r["ttft"], r["pieces"], r["span"]

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def bench_gguf(name: str, reps: int, n_tokens: int, workdir: Path, n_ctx: int) -> dict:
    from openai import OpenAI

    from webui.loaders.llamacpp import default_threads
    from webui.models.facts import gguf_facts
    from webui.templates.chat_template import ChatTemplate

    path = MODELS_DIR / name
    threads = default_threads()
    facts = gguf_facts(path)
    eog = eog_ids(path)
    template = facts.metadata.get("tokenizer.chat_template")
    render = ChatTemplate.compile(template, name).render if template else None

    def prompt_of(i: int) -> str:
        msgs = messages(i)
        if render is None:  # a base model: a plain prompt
            return f"{SYSTEM}\n\nQuestion: {msgs[1]['content']}\nAnswer:"
        return render(msgs, add_generation_prompt=True)

    raw = Engine("raw", path, n_ctx, threads)
    ours = Engine("ours", path, n_ctx, threads)

    def run_raw(i: int):
        return raw.run(prompt_of(i), n_tokens, eog)

    def run_ours(i: int):
        return ours.run(prompt_of(i), n_tokens, eog)

    ours_srv = start_our_server(path, workdir, n_ctx=n_ctx, threads=threads)
    peer_srv = start_peer_server(path, workdir, n_ctx=n_ctx, threads=threads)
    with servers(ours_srv, peer_srv):
        api = OpenAI(base_url=ours_srv.url + "/v1", api_key="none", timeout=600)
        peer = OpenAI(base_url=peer_srv.url + "/v1", api_key="none", timeout=600)
        bias = {str(t): -100 for t in eog}

        def chat(client, i: int, **extra):
            if render is None:
                return timed(
                    lambda: (
                        c.choices[0].text
                        for c in client.completions.create(
                            model=name, prompt=prompt_of(i), max_tokens=n_tokens, temperature=0, stream=True, **extra
                        )
                        if c.choices
                    )
                )
            return timed(
                lambda: (
                    c.choices[0].delta.content
                    for c in client.chat.completions.create(
                        model=name, messages=messages(i), max_tokens=n_tokens, temperature=0, stream=True, **extra
                    )
                    if c.choices
                )
            )

        paths = {
            "raw": run_raw,
            "ours": run_ours,
            "api": lambda i: chat(api, i, extra_body={"ban_eos_token": True}),
            "peer": lambda i: chat(peer, i, logit_bias=bias),
        }
        for warm in paths.values():  # load pages, compile graphs, fill caches once
            warm(-1)
        runs: dict[str, list[tuple]] = {k: [] for k in paths}
        for i in range(reps):
            order = list(paths) if i % 2 == 0 else list(reversed(paths))
            for key in order:
                runs[key].append(paths[key](i))
    raw.stop()
    ours.stop()
    return summarise(name, runs, n_tokens)


def eog_ids(path: Path) -> list[int]:
    """End-of-generation token ids, from llama.cpp itself (vocab only: no weights are loaded)."""
    from llama_cpp import Llama

    from webui.loaders.llama_sampling import eog_tokens

    vocab = Llama(str(path), vocab_only=True, verbose=False)
    try:
        return sorted(int(t) for t in eog_tokens(vocab))
    finally:
        vocab.close()


def summarise(model: str, runs: dict[str, list[tuple]], n_tokens: int) -> dict:
    out = {"model": model, "paths": {}}
    for key, samples in runs.items():
        ttfts = [s[0] for s in samples if s[0] is not None]
        rates = [rate(n_tokens, s[2]) for s in samples if s[0] is not None]
        out["paths"][key] = {
            "ttft_s": median(ttfts),
            "tokens_per_s": median(rates),
            "samples": len(samples),
            "pieces": [s[1] for s in samples],
        }
    return out


def bench_transformers(reps: int, n_tokens: int, checkpoint: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    from webui.generation.scheduler import Generator
    from webui.loaders.llamacpp import default_threads
    from webui.models.manager import ModelManager
    from webui.params import LoadOptions, SamplingParams
    from webui.templates.chat_template import ChatTemplate

    torch.set_num_threads(default_threads())
    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    model.eval()
    render = ChatTemplate.compile(tok.chat_template, "hf").render
    models = ModelManager(checkpoint.parent, LoadOptions(n_ctx=2048))
    models.load(checkpoint.name)
    gen = Generator(models)
    params = SamplingParams(max_tokens=n_tokens, temperature=0, ban_eos_token=True, seed=1)

    def prompt_of(i: int) -> str:
        return render(messages(i), add_generation_prompt=True)

    def run_raw(i: int):
        ids = tok(prompt_of(i), return_tensors="pt")
        streamer = TextIteratorStreamer(tok, skip_prompt=True)
        kwargs = dict(
            **ids,
            max_new_tokens=n_tokens,
            min_new_tokens=n_tokens,
            do_sample=False,
            streamer=streamer,
            pad_token_id=tok.eos_token_id,
        )

        def work():
            with torch.inference_mode():
                model.generate(**kwargs)

        start = time.perf_counter()
        t = threading.Thread(target=work)
        t.start()
        first = last = None
        n = 0
        for piece in streamer:
            if not piece:
                continue
            now = time.perf_counter()
            first = first or now
            last = now
            n += 1
        t.join()
        return first - start, n, last - first

    def run_ours(i: int):
        return timed(lambda: (c.text for c in gen.submit(prompt_of(i), params)))

    paths = {"hf raw": run_raw, "hf ours": run_ours}
    for warm in paths.values():
        warm(-1)
    runs = {k: [] for k in paths}
    for i in range(reps):
        for key in list(paths) if i % 2 == 0 else list(reversed(paths)):
            runs[key].append(paths[key](i))
    models.unload()
    # TextIteratorStreamer yields words (several tokens); rates use the token count, which is fixed.
    return summarise(checkpoint.name, runs, n_tokens)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="smollm,gemma,hf", help="Comma list of smollm, gemma, hf.")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--out", type=Path, help="Results folder (default bench/results).")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        for key in wanted:
            if key in ("smollm", "gemma"):
                print(f"\n== {key}: {args.reps} repetitions of {args.tokens} tokens ==", flush=True)
                results.append(
                    bench_gguf(SMOLLM if key == "smollm" else GEMMA, args.reps, args.tokens, Path(tmp), args.n_ctx)
                )
            elif key == "hf":
                from hf_checkpoint import default_checkpoint_dir, ensure_hf_checkpoint

                ckpt = ensure_hf_checkpoint(MODELS_DIR / SMOLLM, default_checkpoint_dir())
                print(f"\n== transformers: {args.reps} repetitions of {args.tokens} tokens ==", flush=True)
                results.append(bench_transformers(args.reps, args.tokens, ckpt))
    rows, ratios = [], []
    for r in results:
        paths = r["paths"]
        base = paths.get("raw") or paths.get("hf raw")
        for key, v in paths.items():
            rows.append(
                {
                    "model": r["model"],
                    "path": key,
                    "tokens/s": v["tokens_per_s"],
                    "TTFT s": v["ttft_s"],
                    "x raw tokens/s": v["tokens_per_s"] / base["tokens_per_s"],
                    "x raw TTFT": v["ttft_s"] / base["ttft_s"],
                }
            )
        checks = [
            ("ours/raw", "ours", "raw"),
            ("api/raw", "api", "raw"),
            ("api/peer", "api", "peer"),
            ("hf ours/raw", "hf ours", "hf raw"),
        ]
        for label, a, b in checks:
            if a in paths and b in paths:
                ratio = paths[a]["tokens_per_s"] / paths[b]["tokens_per_s"]
                ttft_ratio = paths[a]["ttft_s"] / paths[b]["ttft_s"]
                ratios.append(
                    {
                        "model": r["model"],
                        "ratio": label,
                        "tokens/s ratio": ratio,
                        "target": TARGETS[label],
                        "met": ratio >= TARGETS[label],
                        "TTFT ratio": ttft_ratio,
                    }
                )
    print_table(rows, ["model", "path", "tokens/s", "TTFT s", "x raw tokens/s", "x raw TTFT"], "Medians")
    print_table(ratios, ["model", "ratio", "tokens/s ratio", "target", "met", "TTFT ratio"], "Targets")
    write_results(
        "streaming", {"settings": vars(args) | {"out": str(args.out)}, "results": results, "ratios": ratios}, args.out
    )
    if not args.no_plots and results:
        groups = {r["model"].split(".")[0][:22]: {k: v["tokens_per_s"] for k, v in r["paths"].items()} for r in results}
        plot_bars(IMG_DIR / "streaming-tokens.png", "Generation speed by path (higher is better)", "tokens/s", groups)
        groups = {
            r["model"].split(".")[0][:22]: {k: v["ttft_s"] * 1000 for k, v in r["paths"].items()} for r in results
        }
        plot_bars(IMG_DIR / "streaming-ttft.png", "Time to first token by path (lower is better)", "ms", groups)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
