"""Characters / system prompts: ``characters/*.yaml`` in text-generation-webui's format.

A character file has ``name``, ``greeting`` and ``context`` (``{{char}}`` and ``{{user}}``
are filled in), optionally ``examples`` (few-shot example exchanges, added to the system
prompt for in-context learning) and a picture next to it (``NAME.png`` or ``NAME.jpg``).

The fields of TavernAI/SillyTavern V2 cards are kept under their card names
(``personality``, ``scenario``, ``system_prompt``, ``post_history_instructions``,
``alternate_greetings``, ``creator_notes``, ``tags``, ``creator``, ``character_version``,
``extensions``, ``character_book``), so a card imported and exported again is the same card,
and files without them load as before.

A card dropped into the folder (``NAME.json``, or a ``NAME.png`` with a card inside and no
``NAME.yaml``) is listed and read directly from that file; saving it in the editor, or
importing it with the Chat tab's upload, writes ``NAME.yaml``, which then takes precedence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CardError, SettingsError, WebUIError
from .lorebook import Lorebook
from .storage import TEMP_SUFFIX, atomic_write_bytes, read_yaml, safe_name, write_yaml

if TYPE_CHECKING:
    from .params import SamplingParams

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: The character used when none is chosen: a plain assistant with no context.
DEFAULT_CHARACTER = "Assistant"


#: The text fields of a character, in the order they are saved.
TEXT_FIELDS = ("name", "greeting", "context", "examples", "personality", "scenario", "system_prompt",
               "post_history_instructions", "creator_notes", "creator", "character_version")
_MACRO = re.compile(r"\{\{(char|user|original)\}\}|<(BOT|USER)>", re.IGNORECASE)
_START = re.compile(r"^\s*<START>\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass
class Character:
    name: str = DEFAULT_CHARACTER
    #: Who the character is (a card's ``description``).
    context: str = ""
    #: The first message (a card's ``first_mes``).
    greeting: str = ""
    #: Few-shot example exchanges (in-context learning), sent after the context (a card's ``mes_example``).
    examples: str = ""
    picture: Path | None = None
    #: Keys of the file we do not use, kept when it is saved again.
    extra: dict[str, Any] | None = None
    personality: str = ""
    scenario: str = ""
    #: Replaces the System prompt box unless empty; ``{{original}}`` stands for the box's text.
    system_prompt: str = ""
    #: Sent after the chat history, right before the reply.
    post_history_instructions: str = ""
    #: Offered as other versions of the greeting.
    alternate_greetings: list[str] = field(default_factory=list)
    #: Shown to the user, never sent to the model.
    creator_notes: str = ""
    tags: list[str] = field(default_factory=list)
    creator: str = ""
    character_version: str = ""
    #: A card's ``extensions`` (other tools' data), kept as they are.
    extensions: dict[str, Any] = field(default_factory=dict)
    character_book: Lorebook | None = None

    def fill(self, text: str, user: str, original: str = "") -> str:
        def macro(m: re.Match) -> str:
            word = (m.group(1) or m.group(2)).lower()
            return {"char": self.name, "bot": self.name, "user": user}.get(word, original)
        return _MACRO.sub(macro, text)

    def system_text(self, user: str, *, lore_before: str = "", lore_after: str = "") -> str:
        """The character's part of the system prompt, with fired lorebook text around the description."""
        parts = [lore_before.strip(), self.fill(self.context, user).strip()]
        if self.personality.strip():
            parts.append(f"{self.name}'s personality: {self.fill(self.personality, user).strip()}")
        if self.scenario.strip():
            parts.append(f"Scenario: {self.fill(self.scenario, user).strip()}")
        parts.append(lore_after.strip())
        if self.examples.strip():
            # SillyTavern separates example chats with <START> lines; they are not for the model.
            examples = _START.sub("", self.fill(self.examples, user)).strip()
            examples = re.sub(r"\n{3,}", "\n\n", examples)
            parts.append("Examples of how the conversation goes:\n" + examples)
        return "\n\n".join(p for p in parts if p)

    def system_prompt_with(self, global_prompt: str, user: str) -> str:
        """The system prompt to send: the card's when it has one (``{{original}}`` = the global one)."""
        if not self.system_prompt.strip():
            return global_prompt
        return self.fill(self.system_prompt, user, original=global_prompt)

    def greetings(self, user: str) -> list[str]:
        """The greeting first, then the alternate greetings (each filled in)."""
        found = [self.greeting, *self.alternate_greetings]
        return [self.fill(g, user) for g in found if g.strip()]


def _text(data: dict[str, Any], key: str, source: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a version "1.0" written by hand as 1.0
    if not isinstance(value, str):
        raise SettingsError(f"{source}: '{key}' must be text.")
    return value


def _texts(data: dict[str, Any], key: str, source: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise SettingsError(f"{source}: '{key}' must be a list of texts.")
    return [str(v) for v in value]


def character_from_mapping(data: dict[str, Any], default_name: str, source: str,
                           picture: Path | None = None) -> Character:
    """A Character from a mapping with our YAML keys (also what a card is converted to)."""
    from pydantic import ValidationError

    known = {*TEXT_FIELDS, "alternate_greetings", "tags", "extensions", "character_book"}
    texts = {k: _text(data, k, source) for k in TEXT_FIELDS}
    extensions = data.get("extensions") or {}
    if not isinstance(extensions, dict):
        raise SettingsError(f"{source}: 'extensions' must be a mapping.")
    book = None
    if data.get("character_book"):
        try:
            book = Lorebook.model_validate(data["character_book"])
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise CardError(f"{source}: the lorebook (character_book) is not valid"
                            f"{' at ' + where if where else ''}: {first['msg']}.") from None
    return Character(**{**texts, "name": texts["name"].strip() or default_name}, picture=picture,
                     alternate_greetings=[g for g in _texts(data, "alternate_greetings", source) if g.strip()],
                     tags=_texts(data, "tags", source), extensions=extensions, character_book=book,
                     extra={k: v for k, v in data.items() if k not in known} or None)


def character_to_mapping(character: Character) -> dict[str, Any]:
    """What a character file holds: the text-generation-webui keys first, card fields only when set."""
    data: dict[str, Any] = {"name": character.name, "greeting": character.greeting, "context": character.context}
    for key in TEXT_FIELDS[3:]:
        if getattr(character, key).strip():
            data[key] = getattr(character, key)
    for key in ("alternate_greetings", "tags", "extensions"):
        if getattr(character, key):
            data[key] = getattr(character, key)
    if character.character_book is not None:
        data["character_book"] = character.character_book.to_json()
    data.update(character.extra or {})
    return data


@dataclass
class ImportResult:
    """What an import made: the character (saved under ``file_name``), and what to tell the user."""

    file_name: str
    character: Character
    warnings: list[str] = field(default_factory=list)
    #: Sampling values from a Modelfile's PARAMETER lines (saved as a preset of the same name).
    params: SamplingParams | None = None
    #: A Modelfile's FROM value.
    model_ref: str | None = None
    #: The preset the sampling values were saved as (set by ``Services.import_character``).
    preset: str | None = None
    #: The file in the models folder that FROM names, if any (set by ``Services.import_character``).
    model: str | None = None


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

    def _files(self, pattern: str) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.glob(pattern)
                if p.is_file() and not p.name.startswith(".") and not p.name.endswith(TEMP_SUFFIX)]

    def names(self) -> list[str]:
        found = {DEFAULT_CHARACTER} | {p.stem for p in self._files("*.yaml")}
        found |= {p.stem for p in self._dropped_cards() if p.stem not in found}
        return sorted(found, key=str.lower)

    def _dropped_cards(self) -> list[Path]:
        """Card files put into the folder by hand that have no YAML file (yet)."""
        from .cards import png_has_card

        yamls = {p.stem for p in self._files("*.yaml")}
        cards = [p for p in self._files("*.json") if p.stem not in yamls]
        cards += [p for p in self._files("*.png") if p.stem not in yamls and png_has_card(p)]
        return [p for p in cards if self.is_valid(p.stem)]

    def _dropped_card(self, name: str) -> Path | None:
        from .cards import png_has_card

        stem = safe_name(name, what="character name")
        json_card, png_card = self.folder / f"{stem}.json", self.folder / f"{stem}.png"
        if json_card.is_file():
            return json_card
        return png_card if png_card.is_file() and png_has_card(png_card) else None

    def load(self, name: str) -> Character:
        path = self.path(name)
        if not path.is_file():
            if name == DEFAULT_CHARACTER:
                return Character()
            card = self._dropped_card(name)
            if card is None:
                raise SettingsError(f"There is no character called {name!r}.")
            from .cards import read_bounded, read_card

            character, _, _ = read_card(card.name, read_bounded(card))
            character.picture = self.picture_of(name)
            return character
        return character_from_mapping(read_yaml(path), name, path.name, self.picture_of(name))

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
        write_yaml(path, character_to_mapping(character))
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

    # ----- interop ---------------------------------------------------------------------------
    def free_file_name(self, wanted: str, fallback: str = "Imported character") -> tuple[str, str | None]:
        """A file name for an imported character that is safe and not taken, and a note if it changed."""
        def clean(text: str) -> str:
            text = re.sub(r'[<>:"/\\|?*\x00-\x1f\x7f]+', " ", text or "")
            return re.sub(r"\s+", " ", text).strip(" .")[:80].strip(" .")

        # The card's name, else the uploaded file's name, else a fixed one: the first usable as a file
        # name (both come from the card's author, so both may be hostile: '../x', 'CON', 400 characters).
        cleaned = next((c for c in (clean(wanted), clean(fallback)) if self.is_valid(c)), "Imported character")
        base, n = cleaned, 2
        taken = {n.lower() for n in self.names()}
        while cleaned.lower() in taken:
            cleaned = f"{base} ({n})"
            n += 1
        note = None if cleaned == wanted else (f"Saved as {cleaned!r} (the name {wanted!r} is taken or not "
                                               "usable as a file name).")
        return cleaned, note

    def import_file(self, path: Path, original_name: str | None = None) -> ImportResult:
        """Import a card (PNG/JSON, V1/V2/V3), a text-generation-webui YAML/JSON, or an Ollama Modelfile.

        The character is written to this folder under a new, safe file name (an existing one is
        never overwritten). Raises :class:`CardError` for a file that cannot be read.
        """
        from .cards import read_bounded, read_card
        from .modelfile import looks_like_modelfile, modelfile_character

        shown = original_name or Path(path).name
        raw = read_bounded(Path(path), shown)
        params = model_ref = None
        if looks_like_modelfile(shown, raw):
            character, params, model_ref, warnings = modelfile_character(raw, Path(shown).stem)
            picture = None
        else:
            character, picture, warnings = read_card(shown, raw)
        file_name, note = self.free_file_name(character.name, fallback=Path(shown).stem)
        if note:
            warnings.insert(0, note)
        self.save(file_name, character, picture=picture, picture_suffix=".png")
        character.picture = self.picture_of(file_name)
        return ImportResult(file_name, character, warnings, params, model_ref)

    def export_card(self, name: str, fmt: str) -> bytes:
        """The character as a TavernAI V2 card: ``"png"`` (picture with the card inside) or ``"json"``."""
        from .cards import card_json, card_png

        character = self.load(name)
        if fmt == "json":
            return card_json(character)
        if fmt == "png":
            return card_png(character)
        raise CardError(f"Unknown card format {fmt!r}: use png or json.")
