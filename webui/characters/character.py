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

from webui.characters.lorebook import Lorebook
from webui.errors import CardError, SettingsError

if TYPE_CHECKING:
    pass

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: The character used when none is chosen: a plain assistant with no context.
DEFAULT_CHARACTER = "Assistant"


#: The text fields of a character, in the order they are saved.
TEXT_FIELDS = (
    "name",
    "greeting",
    "context",
    "examples",
    "personality",
    "scenario",
    "system_prompt",
    "post_history_instructions",
    "creator_notes",
    "creator",
    "character_version",
)
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


def character_from_mapping(
    data: dict[str, Any], default_name: str, source: str, picture: Path | None = None
) -> Character:
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
            raise CardError(
                f"{source}: the lorebook (character_book) is not valid"
                f"{' at ' + where if where else ''}: {first['msg']}."
            ) from None
    return Character(
        **{**texts, "name": texts["name"].strip() or default_name},
        picture=picture,
        alternate_greetings=[g for g in _texts(data, "alternate_greetings", source) if g.strip()],
        tags=_texts(data, "tags", source),
        extensions=extensions,
        character_book=book,
        extra={k: v for k, v in data.items() if k not in known} or None,
    )


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
