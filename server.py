#!/usr/bin/env python3
"""Start the web UI. The only place that reads the command line.

    python server.py --model SmolLM2-135M-Instruct.Q4_1.gguf
    python server.py --help
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import webbrowser
from pathlib import Path
from typing import Any

from webui.errors import WebUIError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Local LLM web UI: load a model on this machine and write or chat with it in the browser.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", help="Model to load at start: a name in the models folder (a .gguf file or a "
                                   "model folder), or a path to one. Without it the UI starts with no model.")
    g.add_argument("--default-model", help="Model to load when neither --model nor the saved settings name one "
                                           "(start.sh passes the starter model here).")
    g.add_argument("--model-menu", action="store_true",
                   help="At start, list the models in the terminal and pick one by number.")
    g.add_argument("--loader", choices=["llama.cpp", "transformers"],
                   help="Loader to use. Default: chosen from the model (.gguf -> llama.cpp, folder -> transformers).")
    g.add_argument("--model-dir", type=Path, help="Folder that holds the models. Default: ./models.")
    g.add_argument("--ctx-size", "--n-ctx", dest="n_ctx", type=int,
                   help="Context size in tokens (prompt + reply). 0 = what the model was trained for. Default 4096.")
    g.add_argument("--threads", type=int, help="CPU threads. 0 = one per physical core.")
    g.add_argument("--gpu-layers", "--n-gpu-layers", dest="n_gpu_layers", type=int,
                   help="llama.cpp: layers to offload to the GPU (-1 = all). Needs a GPU build of llama-cpp-python.")
    g.add_argument("--n-batch", type=int, help="llama.cpp: prompt tokens processed per batch.")
    g.add_argument("--no-mmap", action="store_true", default=None,
                   help="llama.cpp: read the whole model into RAM instead of memory-mapping it.")
    g.add_argument("--mlock", action="store_true", default=None,
                   help="llama.cpp: lock the model in RAM so it is never swapped out.")
    g.add_argument("--remote-url", default=os.environ.get("tabby_url"),
                   help="Use a remote OpenAI-compatible server as the model (Tabby, llama.cpp server, vLLM, "
                        "LM Studio...), e.g. http://127.0.0.1:5000. Default: $tabby_url.")
    g.add_argument("--remote-key", default=os.environ.get("tabby_key"),
                   help="API key of the remote server. Default: $tabby_key.")
    g.add_argument("--remote-model", help="Model name to ask the remote server for (default: the first it lists).")
    g.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
                   help="transformers: weight precision.")
    g.add_argument("--device", help="transformers: cpu, cuda, cuda:N, mps or auto.")
    g.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="transformers: allow a model folder to run its own Python code. Only for models you trust.")
    s = p.add_argument_group("server")
    s.add_argument("--listen", action="store_true", default=None,
                   help="Accept connections from other machines on your network (binds 0.0.0.0). "
                        "Default: only this machine (127.0.0.1).")
    s.add_argument("--listen-host", help="Address to bind with --listen, e.g. 192.168.1.5.")
    s.add_argument("--listen-port", type=int, help="Port of the web UI. Default 7860.")
    s.add_argument("--api", action="store_true", default=None,
                   help="Also serve the OpenAI-compatible API under /v1 on the same port "
                        "(http://127.0.0.1:7860/v1 by default).")
    s.add_argument("--api-key", help="Require 'Authorization: Bearer KEY' on every /v1 request (implies --api).")
    s.add_argument("--gradio-auth", help="Ask for a log-in before the web UI opens: 'user:password' "
                                         "(several: 'u1:p1,u2:p2'). Use it with --listen.")
    s.add_argument("--gradio-auth-path", type=Path,
                   help="File of 'user:password' lines (or comma-separated) for the web UI log-in.")
    s.add_argument("--auto-launch", action="store_true", default=None, help="Open the UI in the browser at start.")
    s.add_argument("--settings", type=Path,
                   help="Settings YAML file to read. Default: settings.yaml in the user data folder, if present.")
    s.add_argument("--user-data-dir", type=Path,
                   help="Folder with models/, presets/, characters/, logs/. Default: this project's folder.")
    s.add_argument("--language", choices=["auto", "en", "ru", "zh"],
                   help="Language of the web UI: en, ru, zh, or auto (the browser's language; the default).")
    s.add_argument("--verbose", action="store_true", help="Log more detail.")
    return p


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    top = {"model": args.model, "loader": args.loader, "model_dir": args.model_dir, "listen": args.listen,
           "listen_host": args.listen_host, "listen_port": args.listen_port, "auto_launch": args.auto_launch, "api": args.api,
           "api_key": args.api_key, "gradio_auth": args.gradio_auth, "gradio_auth_path": args.gradio_auth_path,
           "user_data_dir": args.user_data_dir, "language": args.language}
    load = {"n_ctx": args.n_ctx, "threads": args.threads, "n_gpu_layers": args.n_gpu_layers,
            "n_batch": args.n_batch, "use_mmap": False if args.no_mmap else None, "use_mlock": args.mlock,
            "dtype": args.dtype, "device": args.device, "trust_remote_code": args.trust_remote_code}
    load.update({"remote_url": args.remote_url, "remote_key": args.remote_key, "remote_model": args.remote_model})
    out: dict[str, Any] = {k: v for k, v in top.items() if v is not None}
    out["load"] = {k: v for k, v in load.items() if v is not None}
    if args.remote_url and not args.model:
        out["loader"], out["model"] = "remote", args.remote_model or "remote"
    # --model may be a path to a file or folder anywhere: its folder becomes the models folder.
    if args.model and ("/" in args.model or "\\" in args.model) and Path(args.model).exists():
        path = Path(args.model).resolve()
        out["model_dir"], out["model"] = path.parent, path.name
    return out


def model_menu(names: list[str], model_dir: Path) -> str | None:
    """Print the models with numbers and read the user's pick from the terminal (text-generation-webui's menu)."""
    if not names:
        print(f"No models in {model_dir}. Download one in the Model tab, or run: python download-model.py --starter",
              flush=True)
        return None
    print(f"Models in {model_dir}:")
    for i, name in enumerate(names, 1):
        print(f"  {i}. {name}")
    print("  0. none (start without a model)")
    while True:
        try:
            answer = input(f"Pick a model [0-{len(names)}]: ").strip()
        except EOFError:
            print("\nNo answer (no terminal input); starting without picking a model.", flush=True)
            return None
        if answer.isdigit() and 0 <= int(answer) <= len(names):
            return names[int(answer) - 1] if int(answer) else None
        if answer in names:
            return answer
        print(f"Type a number from 0 to {len(names)}.", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Private and offline: no usage analytics from Gradio or the hub client.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import uvicorn

    from webui.app import create_app
    from webui.services import Services
    from webui.settings import Settings

    overrides = overrides_from_args(args)
    settings_file = args.settings
    if settings_file is None:
        settings_file = Path(overrides.get("user_data_dir") or Path(__file__).resolve().parent) / "settings.yaml"
    try:
        settings = Settings.from_file(settings_file, overrides)
    except WebUIError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    try:
        settings.ui_credentials()  # a bad --gradio-auth-path file stops the start, before a model loads
    except WebUIError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    services = Services.build(settings, settings_file)
    if args.model_menu:
        picked = model_menu(services.models.list_models(), services.models.model_dir)
        settings.model, settings.loader = picked, (args.loader if picked else None)
        if not picked:
            args.default_model = None  # the user chose to start without a model
    if not settings.model and args.default_model:
        settings.model = args.default_model
    if settings.model:
        print(f"Loading {settings.model} ...", flush=True)
        try:
            # Saved per-model settings apply; flags typed on this command line win over them.
            loaded = services.load_model(settings.model, settings.loader, explicit=overrides["load"])
            print(f"Loaded {loaded.describe()}", flush=True)
        except WebUIError as exc:
            # Start anyway: the user can pick another model in the Model tab.
            print(f"error: {exc.message}", file=sys.stderr, flush=True)
            if args.default_model and args.default_model != settings.model and not args.model:
                print(f"Loading {args.default_model} instead ...", flush=True)
                try:
                    loaded = services.load_model(args.default_model, explicit=overrides["load"])
                    print(f"Loaded {loaded.describe()}", flush=True)
                except WebUIError as exc2:
                    print(f"error: {exc2.message}", file=sys.stderr, flush=True)
    for warning in settings.exposure_warnings():
        bar = "!" * 78
        print(f"{bar}\n{warning}\n{bar}", file=sys.stderr, flush=True)
    app = create_app(services)
    url = f"http://{'127.0.0.1' if settings.host == '0.0.0.0' else settings.host}:{settings.listen_port}"
    config = uvicorn.Config(app, host=settings.host, port=settings.listen_port, log_level="warning")
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            threading.Event().wait(0.05)
        print(f"Running on {url}", flush=True)
        if settings.api or settings.api_key:
            print(f"OpenAI-compatible API on {url}/v1", flush=True)
        if settings.auto_launch:
            webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
