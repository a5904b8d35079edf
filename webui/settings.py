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
from .storage import read_yaml

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
    model: str | None = Field(None, description="Model to load at start (a name in the models folder).")
    loader: str | None = None
    load: LoadOptions = Field(default_factory=LoadOptions)

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
