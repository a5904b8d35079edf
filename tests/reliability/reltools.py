"""Helpers of the reliability suite: run sizes, the UI's Gradio endpoints, and checks of a user-data folder.

Sizes: CI runs small ones; ``WEBUI_RELIABILITY_FULL=1`` runs the full ones recorded in
docs/reliability.md; each can also be set on its own (``WEBUI_FUZZ_CASES``, ``WEBUI_KILLS``,
``WEBUI_LOAD_CLIENTS``, ``WEBUI_LOAD_REQUESTS``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

FULL = os.environ.get("WEBUI_RELIABILITY_FULL") == "1"


def scale(name: str, ci: int, full: int) -> int:
    return int(os.environ.get(name) or (full if FULL else ci))


def gradio_client(url: str, **kwargs: Any) -> Any:
    from gradio_client import Client

    return Client(url + "/", verbose=False, **kwargs)


def endpoint_args(client: Any, api_name: str, **values: Any) -> dict[str, Any]:
    """Every parameter of a UI endpoint: its default from the page, text boxes empty, ``values`` on top.

    A name in ``values`` that the endpoint does not have is an error here (the UI's inputs changed:
    the test must follow), not a request that quietly fails."""
    info = client.view_api(return_format="dict", print_info=False)["named_endpoints"][api_name]
    args = {
        p["parameter_name"]: (p["parameter_default"] if p["parameter_has_default"] else "") for p in info["parameters"]
    }
    unknown = sorted(set(values) - set(args))
    if unknown:
        raise KeyError(f"{api_name} has no parameter {unknown}; it has {sorted(args)}")
    args.update(values)
    return args


def _label_key(parameter: dict[str, Any]) -> str:
    label = parameter.get("label")
    return label.get("key", "") if isinstance(label, dict) else str(label or "")


def chat_send_args(client: Any, message: str, max_tokens: int) -> dict[str, Any]:
    """The Chat tab's Send endpoint (``/handler``) with ``message`` and ``max_tokens``, found by the
    inputs' labels (the message box is the input right before the Character dropdown)."""
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/handler"]["parameters"]
    keys = [_label_key(p) for p in params]
    text = params[keys.index("chat.character") - 1]["parameter_name"]
    tokens = params[keys.index("param.max_tokens.label")]["parameter_name"]
    return endpoint_args(client, "/handler", **{text: message, tokens: max_tokens})


def data_files(user_dir: Path) -> list[Path]:
    return [p for p in Path(user_dir).rglob("*") if p.is_file() and not p.is_symlink()]


def unparsable_files(user_dir: Path) -> list[str]:
    """Every YAML/JSON file under ``user_dir`` that does not parse (temp files left by a kill excepted)."""
    bad = []
    for path in data_files(user_dir):
        if path.name.startswith(".") and path.name.endswith((".tmp", ".partial")):
            continue  # a write or download cut by the kill: never listed (checked separately)
        try:
            if path.suffix in (".yaml", ".yml"):
                yaml.safe_load(path.read_text(encoding="utf-8"))
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except Exception as exc:  # noqa: BLE001 - any failure to parse is the finding
            bad.append(f"{path}: {exc}")
    return bad


def listed_names(services: Any) -> list[str]:
    """Everything the app lists to the user: presets, characters, chats, models, templates."""
    names = list(services.presets.names()) + list(services.characters.names())
    names += list(services.instruction_templates.names()) + list(services.models.list_models())
    for character in services.characters.names():
        names += [i.id for i in services.chats.list(character)]
    return names
