"""Application settings: where user data lives, how the server listens, loader defaults.

``server.py`` builds one :class:`Settings` from ``settings.yaml`` (or ``--settings
FILE``) and the command line, and passes it to everything that needs it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webui.errors import SettingsError
from webui.params import LoadOptions
from webui.storage import read_yaml, write_yaml

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent.parent


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    user_data_dir: Path = Field(PROJECT_DIR, description="Folder with models/, presets/, characters/, logs/...")
    model_dir: Path | None = Field(None, description="Folder of models; default: <user data>/models.")
    listen: bool = Field(False, description="Accept connections from other machines (binds 0.0.0.0).")
    listen_host: str | None = Field(None, description="Address to bind when listening.")
    listen_port: int = Field(7860, ge=0, le=65535)
    auto_launch: bool = False
    api: bool = Field(False, description="Serve the OpenAI-compatible API under /v1 on the same port.")
    api_key: str | None = Field(None, description="Key every /v1 request must send as 'Authorization: Bearer KEY'.")
    gradio_auth: str | None = Field(None, description="Log-in for the web UI: 'user:password', several separated "
                                                      "by commas.")
    gradio_auth_path: Path | None = Field(None, description="File of 'user:password' lines (or comma-separated) "
                                                            "for the web UI log-in.")
    max_body_mb: float = Field(8.0, gt=0, description="Largest request body (MB) the server accepts; larger ones "
                                                      "get 413. File uploads in the UI may be up to "
                                                      "max_upload_mb.")
    chat_window: int = Field(60, ge=0, le=100_000, description="Messages the chat box shows (the newest; older "
                                                                "ones behind 'Show all messages'). 0: all.")
    language: Literal["auto", "en", "ru", "zh"] = Field(
        "auto", description="Language of the web UI: auto (the browser's), en, ru or zh.")
    max_upload_mb: float = Field(200.0, gt=0, description="Largest file (MB) the UI accepts as an upload.")
    model: str | None = Field(None, description="Model to load at start (a name in the models folder).")
    loader: str | None = None
    load: LoadOptions = Field(default_factory=LoadOptions)
    preset: str | None = Field("Default", description="Sampling preset chosen in the Parameters tab.")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Sampling values that differ from the defaults (Parameters tab).")
    template_overrides: dict[str, str] = Field(default_factory=dict,
                                               description="Instruction template chosen per model (Chat tab).")
    chat_character: str | None = Field(None, description="Character of the chat that was open last.")
    chat_id: str | None = Field(None, description="The chat that was open last (restored on reload/restart).")

    @property
    def models_path(self) -> Path:
        return Path(self.model_dir) if self.model_dir else Path(self.user_data_dir) / "models"

    @property
    def host(self) -> str:
        if self.listen_host:
            return self.listen_host
        return "0.0.0.0" if self.listen else "127.0.0.1"

    @property
    def is_loopback(self) -> bool:
        """True when only this machine can connect."""
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    def ui_credentials(self) -> list[tuple[str, str]]:
        """The (user, password) pairs that may log in to the UI; empty: no log-in asked."""
        pairs = parse_credentials(self.gradio_auth or "", "--gradio-auth")
        if self.gradio_auth_path:
            path = Path(self.gradio_auth_path)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"Cannot read the log-in file {path}: {exc}") from exc
            from_file = parse_credentials(text, str(path))
            if not from_file:
                raise SettingsError(f"The log-in file {path} holds no 'user:password' line.")
            pairs += from_file
        return pairs

    def exposure_warnings(self) -> list[str]:
        """What an address reachable from other machines leaves open (printed loudly at start)."""
        if self.is_loopback:
            return []
        warnings = []
        where = f"{self.host}:{self.listen_port}"
        if not (self.gradio_auth or self.gradio_auth_path):
            warnings.append(
                f"WARNING: the web UI listens on {where} WITHOUT A PASSWORD: every machine on your network can "
                "use it, read your chats and characters, load and delete models. Add --gradio-auth user:password "
                "(or --gradio-auth-path FILE), or drop --listen.")
        if (self.api or self.api_key) and not self.api_key:
            warnings.append(
                f"WARNING: the API on {where}/v1 has NO API KEY: every machine on your network can use it. "
                "Add --api-key KEY.")
        return warnings

    @classmethod
    def from_file(cls, path: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
        """Settings from a YAML file (missing file: defaults) with ``overrides`` on top."""
        data: dict[str, Any] = {}
        if path is not None and Path(path).exists():
            data = read_yaml(Path(path))
            unknown = set(data) - set(cls.model_fields)
            if unknown:
                log.warning("Ignoring unknown keys in %s: %s", path, ", ".join(sorted(unknown)))
        overrides = dict(overrides or {})
        load_over = overrides.pop("load", {}) or {}
        data.update(overrides)
        data["load"] = {**(data.get("load") or {}), **load_over}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SettingsError(f"Invalid settings: {exc}") from exc


def parse_credentials(text: str, source: str) -> list[tuple[str, str]]:
    """``user:password`` entries, separated by commas or new lines (text-generation-webui's format).

    Blank lines and lines starting with ``#`` are skipped. The password may contain ':'.
    """
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("#"):
            continue
        for entry in line.split(","):
            entry = entry.strip()
            if not entry:
                continue
            user, sep, password = entry.partition(":")
            if not sep or not user.strip() or not password:
                raise SettingsError(f"{source}: line {number} has an entry that is not 'user:password' "
                                    "(not shown: it may hold a password).")
            pairs.append((user.strip(), password))
    return pairs


#: The keys the app itself writes back to the settings file (what the user chose in the UI).
REMEMBERED_KEYS = ("model", "loader", "load", "preset", "params", "chat_character", "chat_id",
                   "template_overrides")


def remember(path: Path, **updates: Any) -> None:
    """Write ``updates`` into the settings file, keeping every other key in it.

    A file that no longer parses is left alone (renamed aside would hide the
    user's edits); the error says so.
    """
    unknown = set(updates) - set(REMEMBERED_KEYS)
    if unknown:
        raise ValueError(f"not remembered settings: {sorted(unknown)}")
    path = Path(path)
    data = read_yaml(path) if path.exists() else {}
    for key, value in updates.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        data[key] = value
    write_yaml(path, data)
