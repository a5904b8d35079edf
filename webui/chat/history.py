"""Chat history on disk: one JSON file per chat under ``logs/chats/<character>/``.

Every change is written atomically (temp file + rename), so a crash or a kill
leaves the previous complete file. The file holds our message list (with
regenerated versions and per-message stats) and, for text-generation-webui
compatibility, its ``internal``/``visible`` pairs; a file with only those
pairs (exported by text-generation-webui) loads too.
"""
from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from webui.errors import SettingsError, WebUIError
from webui.storage import TEMP_SUFFIX, atomic_write_text, safe_name

Role = Literal["system", "user", "assistant"]


class ChatNotFoundError(WebUIError):
    status_code = 404
    code = "chat_not_found"


@dataclass
class Message:
    role: Role
    content: str
    #: Earlier and later versions of an assistant reply (Regenerate keeps them all).
    versions: list[str] = field(default_factory=list)
    active: int = 0
    stats: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.versions:
            self.versions = [self.content]

    def set_text(self, text: str) -> None:
        self.content = text
        self.versions[self.active] = text

    def add_version(self, text: str = "") -> None:
        self.versions.append(text)
        self.active = len(self.versions) - 1
        self.content = text
        self.stats = None

    def select(self, index: int) -> None:
        self.active = max(0, min(index, len(self.versions) - 1))
        self.content = self.versions[self.active]


@dataclass
class Chat:
    id: str
    character: str
    title: str = "New chat"
    mode: str = "instruct"
    messages: list[Message] = field(default_factory=list)
    #: Index of the first message still sent to the model (older ones were dropped to fit the context).
    context_start: int = 0
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["internal"], data["visible"] = pairs(self.messages)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], *, chat_id: str, character: str) -> Chat:
        if "messages" in data:
            messages = [Message(**{k: v for k, v in m.items() if k in Message.__dataclass_fields__})
                        for m in data["messages"]]
        elif "internal" in data:  # text-generation-webui's format
            messages = []
            for user, bot in data["internal"]:
                if user and user != "<|BEGIN-VISIBLE-CHAT|>":
                    messages.append(Message("user", user))
                if bot:
                    messages.append(Message("assistant", bot))
        else:
            raise SettingsError("This file is not a chat: it has neither 'messages' nor 'internal'.")
        fields = {k: data[k] for k in ("title", "mode", "context_start", "created", "updated") if k in data}
        return cls(id=chat_id, character=character, messages=messages, **fields)


def pairs(messages: list[Message]) -> tuple[list[list[str]], list[list[str]]]:
    """text-generation-webui's [[user, bot], ...] view of a message list (system messages left out)."""
    internal: list[list[str]] = []
    for m in messages:
        if m.role == "user":
            internal.append([m.content, ""])
        elif m.role == "assistant":
            if internal and internal[-1][1] == "":
                internal[-1][1] = m.content
            else:  # a greeting, or two replies in a row
                internal.append(["<|BEGIN-VISIBLE-CHAT|>" if not internal else "", m.content])
    visible = [[u if u != "<|BEGIN-VISIBLE-CHAT|>" else "", b] for u, b in internal]
    return internal, visible


@dataclass
class ChatInfo:
    id: str
    character: str
    title: str
    updated: float
    messages: int
    #: Why the file cannot be read, for a damaged chat file (listed so the user sees it; never rewritten).
    unreadable: str | None = None


class ChatStore:
    """The chats folder. Character and chat names go through ``safe_name``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _path(self, character: str, chat_id: str) -> Path:
        return (self.folder / safe_name(character, what="character name")
                / f"{safe_name(chat_id, what='chat id')}.json")

    def new(self, character: str, mode: str = "instruct") -> Chat:
        chat_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        return Chat(id=chat_id, character=character, mode=mode)

    def save(self, chat: Chat) -> None:
        chat.updated = time.time()
        atomic_write_text(self._path(chat.character, chat.id), json.dumps(chat.to_json(), ensure_ascii=False,
                                                                          indent=1))

    def load(self, character: str, chat_id: str) -> Chat:
        path = self._path(character, chat_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ChatNotFoundError(f"There is no chat {chat_id!r} for {character!r}.") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"The chat file {path.name} is damaged ({exc}); it was left as it is.") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"The chat file {path.name} does not hold a chat.")
        try:
            return Chat.from_json(data, chat_id=chat_id, character=character)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise SettingsError(f"The chat file {path.name} does not hold a valid chat ({exc}); "
                                "it was left as it is.") from exc

    def list(self, character: str) -> list[ChatInfo]:
        folder = self.folder / safe_name(character, what="character name")
        infos, damaged = [], []
        for path in folder.glob("*.json") if folder.is_dir() else []:
            if path.name.startswith(".") or path.name.endswith(TEMP_SUFFIX):
                continue
            try:
                chat = self.load(character, path.stem)
            except WebUIError as exc:
                # Listed (after the readable ones) under its file name, so it is not silently hidden;
                # opening it says why it cannot be read. It is never rewritten or deleted for the user.
                damaged.append(ChatInfo(path.stem, character, f"⚠ unreadable chat file {path.name}",
                                        path.stat().st_mtime, 0, unreadable=exc.message))
                continue
            infos.append(ChatInfo(chat.id, character, chat.title, chat.updated, len(chat.messages)))
        return (sorted(infos, key=lambda i: i.updated, reverse=True)
                + sorted(damaged, key=lambda i: i.updated, reverse=True))

    def newest(self, character: str) -> Chat | None:
        """The most recently updated chat of ``character`` that can be read, or None."""
        for info in self.list(character):
            if info.unreadable is None:
                return self.load(character, info.id)
        return None

    def rename(self, character: str, chat_id: str, title: str) -> Chat:
        chat = self.load(character, chat_id)
        chat.title = title.strip()[:200] or chat.title
        self.save(chat)
        return chat

    def delete(self, character: str, chat_id: str) -> None:
        path = self._path(character, chat_id)
        if not path.exists():
            raise ChatNotFoundError(f"There is no chat {chat_id!r} for {character!r}.")
        path.unlink()

    def import_file(self, character: str, raw: bytes) -> Chat:
        """Import a chat JSON file (ours or text-generation-webui's) as a new chat."""
        try:
            data = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"The file is not a JSON chat: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError("The file does not hold a chat.")
        fresh = self.new(character)
        chat = Chat.from_json(data, chat_id=fresh.id, character=character)
        chat.title = data.get("title") or "Imported chat"
        self.save(chat)
        return chat
