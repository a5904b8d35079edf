"""Sampling presets: ``presets/*.yaml`` files of ``SamplingParams`` values.

A preset stores only what differs from the defaults. Files written by
text-generation-webui load with the same meaning (its key names are aliases
of ours); keys we do not know are reported, never fatal, and written back
unchanged when the preset is saved again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, ValidationError

from webui.errors import PresetNotFoundError, SettingsError
from webui.params import SamplingParams
from webui.storage import YamlFolder


def _accepted_keys() -> dict[str, str]:
    """Every key a preset may use -> the field it sets."""
    keys: dict[str, str] = {}
    for name, info in SamplingParams.model_fields.items():
        keys[name] = name
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    keys[choice] = name
    return keys


ACCEPTED_KEYS = _accepted_keys()


@dataclass
class Preset:
    name: str
    params: SamplingParams
    #: Keys of the file that we do not use, kept so saving again does not lose them.
    unknown: dict[str, Any] = field(default_factory=dict)

    @property
    def warning(self) -> str | None:
        if not self.unknown:
            return None
        return (
            f"Preset {self.name!r} has settings this app does not use: {', '.join(sorted(self.unknown))}. "
            "They are ignored, and kept in the file when you save it."
        )


def parse_preset(name: str, data: dict[str, Any]) -> Preset:
    known = {k: v for k, v in data.items() if k in ACCEPTED_KEYS}
    unknown = {k: v for k, v in data.items() if k not in ACCEPTED_KEYS}
    try:
        params = SamplingParams.model_validate(known)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"Preset {name!r} has invalid values: {problems}") from exc
    return Preset(name, params, unknown)


class PresetStore(YamlFolder):
    """The presets folder. Every name goes through ``safe_name``; writes are atomic."""

    what = "preset name"

    def missing(self, name: str) -> PresetNotFoundError:
        return PresetNotFoundError(f"There is no preset called {name!r}.")

    def load(self, name: str) -> Preset:
        return parse_preset(name, self.read(name))

    def save(self, name: str, params: SamplingParams, unknown: dict[str, Any] | None = None) -> Path:
        return self.write(name, {**params.non_default(), **(unknown or {})})
