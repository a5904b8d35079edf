"""Lorebooks (world info): the ``character_book`` of a TavernAI V2/V3 card, and which entries fire.

An entry fires when one of its ``keys`` appears in the last ``scan_depth`` messages (whole
words unless the entry says otherwise; case-insensitive unless ``case_sensitive``); a
``selective`` entry also needs one of its ``secondary_keys``. ``constant`` entries always fire,
``enabled: false`` ones never. When the fired entries are longer than the ``token_budget``,
the least important ones (lowest ``priority``, else lowest ``insertion_order``) are left out;
the kept ones go into the prompt sorted by ``insertion_order``, before or after the character
description (``position``).

Matching is linear: the scanned text is built and lower-cased once, and every key is looked up
once with ``str.find`` (no regular expression per key, no pairwise comparisons).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Bounds that keep a hostile or oversized book from making the app slow.
MAX_ENTRIES = 2000
MAX_KEYS_PER_ENTRY = 100
MAX_ENTRY_CHARS = 20_000
MAX_SCAN_DEPTH = 100
#: SillyTavern's default: the last two messages are scanned.
DEFAULT_SCAN_DEPTH = 2


def _text_list(value: Any) -> Any:
    if value is None:
        return []
    if isinstance(value, str):
        return [k.strip() for k in value.split(",") if k.strip()]
    if isinstance(value, list):
        return [str(v) for v in value if v is not None and str(v).strip()]
    return value


class LoreEntry(BaseModel):
    """One entry of a V2 ``character_book``. Unknown keys are kept (``extra='allow'``)."""

    model_config = ConfigDict(extra="allow")

    keys: list[str] = Field(default_factory=list, max_length=MAX_KEYS_PER_ENTRY)
    content: str = Field("", max_length=MAX_ENTRY_CHARS)
    extensions: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True
    insertion_order: int = 100
    case_sensitive: bool | None = None
    name: str | None = None
    priority: int | None = None
    id: int | str | None = None
    comment: str | None = None
    selective: bool | None = None
    secondary_keys: list[str] = Field(default_factory=list, max_length=MAX_KEYS_PER_ENTRY)
    constant: bool | None = None
    position: str | None = None

    @field_validator("keys", "secondary_keys", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _text_list(value)

    @field_validator("insertion_order", mode="before")
    @classmethod
    def _order(cls, value: Any) -> Any:
        return 100 if value is None or value == "" else value

    @field_validator("enabled", mode="before")
    @classmethod
    def _enabled(cls, value: Any) -> Any:
        return True if value is None else value

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        return "" if value is None else value

    @property
    def label(self) -> str:
        return self.name or self.comment or (", ".join(self.keys[:3]) if self.keys else f"entry {self.id}")

    @property
    def after_char(self) -> bool:
        return (self.position or "before_char") == "after_char"


class Lorebook(BaseModel):
    """A V2 ``character_book``."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    description: str | None = None
    scan_depth: int | None = Field(None, ge=0)
    token_budget: int | None = Field(None, ge=0)
    recursive_scanning: bool | None = None
    extensions: dict[str, Any] = Field(default_factory=dict)
    entries: list[LoreEntry] = Field(default_factory=list, max_length=MAX_ENTRIES)

    @field_validator("entries", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        # SillyTavern's own world-info files keep entries in a mapping {"0": {...}, "1": {...}}.
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list) and len(value) > MAX_ENTRIES:
            # Said before validating each entry, so a huge book fails fast with a clear reason.
            raise ValueError(f"the lorebook has {len(value):,} entries; at most {MAX_ENTRIES:,} are supported")
        return value

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


@dataclass
class FiredEntry:
    entry: LoreEntry
    #: What made it fire: the key found, or "constant".
    reason: str
    tokens: int


@dataclass
class Activation:
    """The entries that go into one prompt, and those that fired but did not fit the budget."""

    before: list[FiredEntry]
    after: list[FiredEntry]
    left_out: list[FiredEntry]

    @property
    def fired(self) -> list[FiredEntry]:
        return [*self.before, *self.after]

    def text(self, where: str) -> str:
        entries = self.before if where == "before" else self.after
        return "\n".join(f.entry.content.strip() for f in entries if f.entry.content.strip())

    def summary(self) -> str:
        """A short report for the prompt view: which entries fired and why."""
        if not self.fired and not self.left_out:
            return ""
        lines = [
            f"- {f.entry.label} ({f.reason}, {f.tokens} tokens, {'after' if f.entry.after_char else 'before'}"
            " the character)"
            for f in self.fired
        ]
        lines += [f"- {f.entry.label} ({f.reason}) left out: over the token budget" for f in self.left_out]
        return "Lorebook entries fired:\n" + "\n".join(lines)


NOTHING = Activation([], [], [])


def _found(haystack: str, key: str, whole_words: bool) -> bool:
    """``key`` occurs in ``haystack`` (at word boundaries when ``whole_words``)."""
    if not key:
        return False
    start = haystack.find(key)
    if not whole_words:
        return start >= 0
    # Boundaries are only required where the key itself starts/ends with a word character,
    # so keys like "C++" or "#tag" still match.
    need_left, need_right = key[0].isalnum(), key[-1].isalnum()
    while start >= 0:
        end = start + len(key)
        left_ok = not need_left or start == 0 or not haystack[start - 1].isalnum()
        right_ok = not need_right or end == len(haystack) or not haystack[end].isalnum()
        if left_ok and right_ok:
            return True
        start = haystack.find(key, start + 1)
    return False


def _first_key(keys: Iterable[str], text: str, lowered: str, case_sensitive: bool, whole_words: bool) -> str | None:
    for key in keys:
        key = key.strip()
        if key and _found(text if case_sensitive else lowered, key if case_sensitive else key.lower(), whole_words):
            return key
    return None


def activate(
    book: Lorebook | None, recent: list[str], *, count_tokens: Callable[[str], int], default_budget: int
) -> Activation:
    """The entries of ``book`` that fire for ``recent`` (the chat's messages, oldest first).

    ``count_tokens`` measures an entry (the loaded model's tokenizer, or an estimate);
    ``default_budget`` applies when the book sets no ``token_budget``.
    """
    if book is None or not book.entries:
        return NOTHING
    depth = min(MAX_SCAN_DEPTH, DEFAULT_SCAN_DEPTH if book.scan_depth is None else book.scan_depth)
    text = "\n".join(recent[-depth:]) if depth else ""
    lowered = text.lower()
    fired: list[FiredEntry] = []
    for entry in book.entries:
        if not entry.enabled or not entry.content.strip():
            continue
        if entry.constant:
            reason = "constant"
        else:
            whole = entry.extensions.get("match_whole_words")
            whole_words = True if whole is None else bool(whole)
            case = bool(entry.case_sensitive)
            key = _first_key(entry.keys, text, lowered, case, whole_words)
            if key is None:
                continue
            if entry.selective and entry.secondary_keys:
                second = _first_key(entry.secondary_keys, text, lowered, case, whole_words)
                if second is None:
                    continue
                key = f"{key} + {second}"
            reason = f"key {key!r}"
        fired.append(FiredEntry(entry, reason, 0))
    if not fired:
        return NOTHING
    budget = default_budget if book.token_budget is None else book.token_budget
    # The most important first when deciding what fits; constant entries before keyed ones.
    by_importance = sorted(
        fired,
        key=lambda f: (
            not f.entry.constant,
            -(f.entry.priority if f.entry.priority is not None else f.entry.insertion_order),
        ),
    )
    kept, left_out, used = [], [], 0
    for f in by_importance:
        f.tokens = count_tokens(f.entry.content.strip())
        if used + f.tokens <= budget:
            kept.append(f)
            used += f.tokens
        else:
            left_out.append(f)
    chosen = {id(f) for f in kept}
    # Book order for equal insertion_order (sort is stable).
    kept = sorted((f for f in fired if id(f) in chosen), key=lambda f: f.entry.insertion_order)
    return Activation([f for f in kept if not f.entry.after_char], [f for f in kept if f.entry.after_char], left_out)
