"""Per-model settings ("Save settings" in the Model tab), kept in models/config-user.yaml."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from webui.params import LoadOptions

#: Per-model settings live in the models folder, one YAML mapping keyed by model name
#: (text-generation-webui keeps the same idea in ``models/config-user.yaml``; its regex keys are read too).
MODEL_SETTINGS_FILE = "config-user.yaml"
#: Load options that are never saved per model: they belong to a server, not to a file (and keys are secrets).
NOT_PER_MODEL = frozenset({"remote_url", "remote_key", "remote_model", "remote_api"})
#: text-generation-webui's names for the same options.
OPTION_ALIASES = {"ctx_size": "n_ctx", "max_seq_len": "n_ctx", "gpu_layers": "n_gpu_layers",
                  "n-gpu-layers": "n_gpu_layers", "batch_size": "n_batch", "no_mmap": "use_mmap", "mlock": "use_mlock",
                  "trust-remote-code": "trust_remote_code"}


class ModelSettings(BaseModel):
    """What "Save settings" stores for one model: loader, its options, template, preset and tool-call format."""

    model_config = ConfigDict(extra="forbid")

    loader: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    instruction_template: str | None = None
    preset: str | None = None
    #: A tool-call format name (``webui.agents.formats.FORMAT_NAMES``) used instead of the one read from the
    #: chat template. Kept as written: the name is checked where it is used (an unknown one means "auto").
    tool_format: str | None = None

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> ModelSettings:
        """Read one YAML entry: flat keys, as text-generation-webui writes them."""
        options: dict[str, Any] = {}
        for key, value in entry.items():
            name = OPTION_ALIASES.get(key, key)
            if name == "use_mmap" and key == "no_mmap":
                value = not value
            if name in LoadOptions.model_fields and name not in NOT_PER_MODEL:
                options[name] = value
        LoadOptions.model_validate(options)  # bad values fail here, with the field named
        tool_format = entry.get("tool_format")
        return cls(loader=entry.get("loader"), options=options,
                   instruction_template=entry.get("instruction_template") or None, preset=entry.get("preset") or None,
                   tool_format=str(tool_format) if tool_format else None)

    def to_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        if self.loader:
            entry["loader"] = self.loader
        entry.update({k: v for k, v in self.options.items() if k not in NOT_PER_MODEL})
        if self.instruction_template:
            entry["instruction_template"] = self.instruction_template
        if self.preset:
            entry["preset"] = self.preset
        if self.tool_format:
            entry["tool_format"] = self.tool_format
        return entry
