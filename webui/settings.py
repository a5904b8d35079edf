"""Application settings: where user data lives, how the server listens, loader defaults.

``server.py`` builds one :class:`Settings` from ``settings.yaml`` (or ``--settings
FILE``) and the command line, and passes it to everything that needs it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import SettingsError
from .loaders import LoadOptions
from .storage import read_yaml, write_yaml

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
