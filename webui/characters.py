"""Characters / system prompts: ``characters/*.yaml`` in text-generation-webui's format.

A character file has ``name``, ``greeting`` and ``context`` (``{{char}}`` and ``{{user}}``
are filled in), optionally ``examples`` (few-shot example exchanges, added to the system
prompt for in-context learning) and a picture next to it (``NAME.png`` or ``NAME.jpg``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SettingsError, WebUIError
from .storage import TEMP_SUFFIX, atomic_write_bytes, read_yaml, safe_name, write_yaml

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: The character used when none is chosen: a plain assistant with no context.
DEFAULT_CHARACTER = "Assistant"


@dataclass
class Character:
    name: str = DEFAULT_CHARACTER
    context: str = ""
    greeting: str = ""
    #: Few-shot example exchanges (in-context learning), sent after the context.
    examples: str = ""
    picture: Path | None = None
    #: Keys of the file we do not use, kept when it is saved again.
    extra: dict[str, Any] | None = None

    def fill(self, text: str, user: str) -> str:
        return text.replace("{{char}}", self.name).replace("{{user}}", user)

    def system_text(self, user: str) -> str:
        parts = [self.fill(self.context, user).strip()]
        if self.examples.strip():
            parts.append("Examples of how the conversation goes:\n" + self.fill(self.examples, user).strip())
        return "\n\n".join(p for p in parts if p)


class CharacterStore:
    """The characters folder. Names go through ``safe_name``; writes are atomic."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / f"{safe_name(name, what='character name')}.yaml"

    def is_valid(self, name: str) -> bool:
        try:
            self.path(name)
        except WebUIError:
            return False
        return True

    def names(self) -> list[str]:
        found = {DEFAULT_CHARACTER}
        if self.folder.is_dir():
            found |= {p.stem for p in self.folder.glob("*.yaml")
                      if not p.name.startswith(".") and not p.name.endswith(TEMP_SUFFIX)}
        return sorted(found, key=str.lower)

    def load(self, name: str) -> Character:
        path = self.path(name)
        if not path.is_file():
            if name == DEFAULT_CHARACTER:
                return Character()
            raise SettingsError(f"There is no character called {name!r}.")
        data = read_yaml(path)
        known = {"name", "context", "greeting", "examples"}
        for key in known & set(data):
            if not isinstance(data[key], str):
                raise SettingsError(f"{path.name}: '{key}' must be text.")
        return Character(name=str(data.get("name") or name), context=data.get("context", ""),
                         greeting=data.get("greeting", ""), examples=data.get("examples", ""),
                         picture=self.picture_of(name),
                         extra={k: v for k, v in data.items() if k not in known} or None)

    def picture_of(self, name: str) -> Path | None:
        stem = safe_name(name, what="character name")
        for suffix in PICTURE_SUFFIXES:
            p = self.folder / f"{stem}{suffix}"
            if p.is_file():
                return p
        return None

    def save(self, file_name: str, character: Character, picture: bytes | None = None,
             picture_suffix: str = ".png") -> Path:
        path = self.path(file_name)
        data: dict[str, Any] = {"name": character.name, "greeting": character.greeting, "context": character.context}
        if character.examples.strip():
            data["examples"] = character.examples
        data.update(character.extra or {})
        write_yaml(path, data)
        if picture is not None:
            suffix = picture_suffix.lower() if picture_suffix.lower() in PICTURE_SUFFIXES else ".png"
            for old in PICTURE_SUFFIXES:
                (self.folder / f"{path.stem}{old}").unlink(missing_ok=True)
            atomic_write_bytes(self.folder / f"{path.stem}{suffix}", picture)
        return path

    def delete(self, name: str) -> None:
        path = self.path(name)
        if not path.is_file():
            raise SettingsError(f"There is no character called {name!r}.")
        path.unlink()
        for suffix in PICTURE_SUFFIXES:
            (self.folder / f"{path.stem}{suffix}").unlink(missing_ok=True)
