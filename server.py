#!/usr/bin/env python3
"""Start the web UI. The only place that reads the command line.

The flags are not written here: each is a field of the settings models (``webui/settings.py``),
which gives it its ``settings.yaml`` key, its ``WEBUI_*`` environment variable and its help.

    python server.py --model SmolLM2-135M-Instruct.Q4_1.gguf
    python server.py --help
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import webbrowser
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from webui.errors import WebUIError
from webui.settings import LaunchOptions, build_parser, split_values, values_from_env


def read_options(argv: list[str] | None, environ: Mapping[str, str]) -> tuple[dict[str, Any], LaunchOptions]:
    """(Settings overrides, launch options) from the environment and the command line, which wins.

    Exits with a usage message on a bad flag (argparse) or a bad environment variable.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        env = values_from_env(environ)
    except WebUIError as exc:
        parser.exit(2, f"error: {exc.message}\n")
    return split_values({**env, **vars(args)})


def model_menu(names: list[str], model_dir: Path) -> str | None:
    """Print the models with numbers and read the user's pick from the terminal (text-generation-webui's menu)."""
    if not names:
        print(
            f"No models in {model_dir}. Download one in the Model tab, or run: python download-model.py --starter",
            flush=True,
        )
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


def stopping_server_class() -> type:
    import uvicorn

    class StoppingServer(uvicorn.Server):
        """uvicorn's server that stops every running generation at Ctrl+C (SIGINT) or SIGTERM.

        uvicorn waits for open connections to close before it stops, and a page's stream stays open until its
        reply ends: Ctrl+C during a long reply waited for all of it (30 s was seen by hand). Now each reply is
        stopped as Stop stops it (saved as far as it got) and the server exits within a second or two.
        """

        def __init__(self, config: uvicorn.Config, services: Any) -> None:
            super().__init__(config)
            self.services = services

        def handle_exit(self, sig: int, frame: Any) -> None:
            try:
                self.services.stop_generating()
                self.end_heartbeats()
            finally:
                super().handle_exit(sig, frame)

        def end_heartbeats(self) -> None:
            """Each open page holds a heartbeat stream that ends only when the page closes (uvicorn would wait
            for it): Gradio ends them when its stop event is set, as its own launch() does on close."""
            import asyncio

            for route in getattr(self.config.app, "routes", []):
                event = getattr(getattr(route, "app", None), "stop_event", None)
                if event is None:
                    continue
                try:
                    asyncio.get_running_loop().call_soon_threadsafe(event.set)
                except RuntimeError:  # (no loop running in this thread)
                    event.set()

    return StoppingServer


def main(argv: list[str] | None = None) -> int:
    overrides, launch = read_options(argv, os.environ)
    logging.basicConfig(
        level=logging.DEBUG if launch.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Private and offline: no usage analytics from Gradio or the hub client.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import uvicorn

    from webui.app import create_app
    from webui.services import Services
    from webui.settings import Settings

    settings_file = launch.settings_file(overrides)
    try:
        # (a settings file broken by hand is set aside or its bad values left out, and the start says so)
        settings = Settings.from_file(settings_file, overrides, repair=True)
        settings.ui_credentials()  # a bad --gradio-auth-path file stops the start, before a model loads
    except WebUIError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    try:
        services = Services.build(settings, settings_file)
    except WebUIError as exc:  # a users or API keys file broken by hand: the start stops (log-in must not go), clearly
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    default_model = launch.default_model
    if launch.model_menu:
        picked = model_menu(services.models.list_models(), services.models.model_dir)
        settings.model, settings.loader = picked, (overrides.get("loader") if picked else None)
        if not picked:
            default_model = None  # the user chose to start without a model
    if not settings.model and default_model:
        settings.model = default_model
    if settings.model:
        print(f"Loading {settings.model} ...", flush=True)
        try:
            # Saved per-model settings apply; load options given at this start win over them.
            loaded = services.load_model(settings.model, settings.loader, explicit=overrides["load"])
            print(f"Loaded {loaded.describe()}", flush=True)
        except WebUIError as exc:
            # Start anyway: the user can pick another model in the Model tab.
            print(f"error: {exc.message}", file=sys.stderr, flush=True)
            # Never instead of a model named at this start (a remote server that is down is not one).
            named = "model" in overrides and overrides.get("loader") != "remote"
            if default_model and default_model != settings.model and not named:
                print(f"Loading {default_model} instead ...", flush=True)
                try:
                    loaded = services.load_model(default_model, explicit=overrides["load"])
                    print(f"Loaded {loaded.describe()}", flush=True)
                except WebUIError as exc2:
                    print(f"error: {exc2.message}", file=sys.stderr, flush=True)
    for warning in settings.exposure_warnings():
        bar = "!" * 78
        print(f"{bar}\n{warning}\n{bar}", file=sys.stderr, flush=True)
    app = create_app(services)
    url = f"http://{'127.0.0.1' if settings.host == '0.0.0.0' else settings.host}:{settings.listen_port}"
    # (a stream still open 5 s after Ctrl+C is closed: the replies were stopped at once, see StoppingServer)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.listen_port, log_level="warning", timeout_graceful_shutdown=5
    )
    server = stopping_server_class()(config, services)

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
    try:
        server.run()
    finally:
        services.close()  # MCP servers stop with the app
    return 0


if __name__ == "__main__":
    sys.exit(main())
