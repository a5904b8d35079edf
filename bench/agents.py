#!/usr/bin/env python3
"""What the agent features cost in generation speed, against plain generation in the same run.

    .venv/bin/python bench/agents.py                 # SmolLM2, 3 repetitions of 96 tokens
    .venv/bin/python bench/agents.py --reps 5 --tokens 128

Greedy decoding of a fixed number of tokens (end-of-text banned) on our llama.cpp loader through
the generation service, with:

  plain      nothing extra (the baseline)
  logprobs   ``top_logprobs=5`` on every token (API ``logprobs``; the Notebook's probabilities)
  lazy       a tool-call grammar that waits for its trigger (``tool_choice: auto``), never triggered
  grammar    a grammar from the first token: any text without the letter "q" (the cost of a grammar
             that stays on for every token, as a forced call or a JSON schema does)

The variants take turns within each repetition; medians. Tokens/s counts tokens after the first
over the time after the first.
"""

from __future__ import annotations

import argparse

from common import MODELS_DIR, SMOLLM, median, print_table, write_results

from webui.agents.formats import format_by_name
from webui.agents.types import ToolChoice, ToolSpec
from webui.generation.scheduler import Generator, Prepared
from webui.loaders.base import StreamExtras
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams

PROMPT = "<|im_start|>user\nDescribe, step by step, how a bicycle works.<|im_end|>\n<|im_start|>assistant\n"
TOOL = ToolSpec("get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
NO_Q = "root ::= [^q]*"


def variants() -> dict[str, tuple[str | None, StreamExtras | None]]:
    hermes = format_by_name("hermes")
    tool_grammar = hermes.grammar([TOOL], ToolChoice("auto"), True)
    return {
        "plain": (None, None),
        "logprobs": (None, StreamExtras(top_logprobs=5)),
        # "<tool_call>" never comes: the grammar waits, as under tool_choice auto while the model writes text
        "lazy": (tool_grammar, StreamExtras(grammar_triggers=tuple(hermes.triggers))),
        "grammar": (NO_Q, None),
    }


def run(gen: Generator, tokens: int, grammar: str | None, extras: StreamExtras | None) -> float:
    params = SamplingParams(do_sample=False, max_tokens=tokens, ban_eos_token=True, seed=1)
    job = gen.submit(params=params, prepare=lambda loaded, p: Prepared(PROMPT, grammar=grammar, extras=extras))
    job.result()
    assert job.stats is not None and job.stats.completion_tokens == tokens, job.stats
    return job.stats.tokens_per_second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=96)
    args = ap.parse_args()
    models = ModelManager(MODELS_DIR, LoadOptions(n_ctx=2048))
    models.load(SMOLLM)
    gen = Generator(models)
    cases = variants()
    speeds: dict[str, list[float]] = {name: [] for name in cases}
    run(gen, 8, None, None)  # warm-up
    for _ in range(args.reps):
        for name, (grammar, extras) in cases.items():
            speeds[name].append(run(gen, args.tokens, grammar, extras))
    models.unload()
    base = median(speeds["plain"])
    rows = [
        {"variant": name, "tokens/s": round(median(v), 1), "vs plain": round(median(v) / base, 3)}
        for name, v in speeds.items()
    ]
    print_table(rows, ["variant", "tokens/s", "vs plain"], f"{SMOLLM}, {args.tokens} tokens, {args.reps} reps")
    write_results("agents", {"model": SMOLLM, "tokens": args.tokens, "reps": args.reps, "rows": rows})


if __name__ == "__main__":
    main()
