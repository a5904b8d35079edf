"""Old against new default sampling values on SmolLM2: how many replies end by themselves, how repetitive.

    python bench/defaults.py [--seeds 5] [--out bench/results]

Runs a few-shot Notebook prompt, a few-shot chat and three chat prompts (tests/loopcheck.py) with
each configuration and several seeds, and prints per configuration: replies that ended before the
token limit, the mean repetition (share of repeated word 4-grams) and the tokens generated. The
numbers in the README's Parameters section and docs/first-steps.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from common import MODELS_DIR, RESULTS_DIR, SMOLLM, print_table, write_results

from loopcheck import OLD_DEFAULTS, Run, run_cases
from webui.generation.scheduler import Generator
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams

CONFIGS: dict[str, dict[str, object]] = {
    "old defaults": OLD_DEFAULTS,
    "new defaults": {},
}


def summarise(runs: list[Run]) -> dict[str, object]:
    return {
        "case": runs[0].case if len({r.case for r in runs}) == 1 else "all",
        "runs": len(runs),
        "ended": sum(r.ended for r in runs),
        "repetition": round(statistics.mean(r.repetition for r in runs), 3),
        "tokens": round(statistics.mean(r.tokens for r in runs), 1),
        "longest": max(r.tokens for r in runs),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument(
        "--extra",
        action="append",
        default=[],
        help='another configuration as JSON over the new defaults: {"top_k": 20}',
    )
    args = ap.parse_args()
    configs = dict(CONFIGS)
    for extra in args.extra:
        configs[extra] = json.loads(extra)
    seeds = list(range(1, args.seeds + 1))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / SMOLLM).symlink_to(MODELS_DIR / SMOLLM)
        models = ModelManager(Path(tmp), LoadOptions(n_ctx=2048))
        models.load(SMOLLM)
        generator = Generator(models)
        results: dict[str, object] = {}
        for name, values in configs.items():
            params = SamplingParams.model_validate({**SamplingParams().model_dump(), **values})
            runs = list(run_cases(generator, params, seeds))
            rows = [summarise([r for r in runs if r.case == c]) for c in dict.fromkeys(r.case for r in runs)]
            rows.append(summarise(runs))
            results[name] = {"params": values, "max_tokens": params.max_tokens, "rows": rows}
            print_table(rows, ["case", "runs", "ended", "repetition", "tokens", "longest"], f"{name} {values}")
        models.unload()
    write_results("defaults", {"seeds": seeds, "results": results}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
