"""Chat history on disk: one JSON file per chat under ``logs/chats/<character>/``.

Every change is written atomically (temp file + rename), so a crash or a kill
leaves the previous complete file. The file holds our message list (with
regenerated versions, per-message stats, and a reasoning model's thinking apart
from the reply) and, for text-generation-webui compatibility, its
``internal``/``visible`` pairs (replies only); a file with only those pairs
(exported by text-generation-webui) loads too.

A chat also keeps what it was set up with (mode, system prompt, persona, instruction template,
thinking on or off: :data:`SETUP_FIELDS`), so reopening it - after a reload, a restart, or from the list - brings
its rules back; a file without them (an older one, text-generation-webui's) gets the defaults.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from webui.chat.attachments import Attachment, AttachmentFiles
from webui.errors import BranchRangeError, ChatBusyError, ChatNotFoundError, SettingsError, WebUIError
from webui.storage import TEMP_SUFFIX, atomic_write_bytes, atomic_write_text, file_lock, in_order, safe_name

Role = Literal["system", "user", "assistant", "tool"]
#: The fields of a chat that say how it is set up (restored with the chat, remembered as the last used).
SETUP_FIELDS = ("mode", "system_prompt", "persona_name", "persona_bio", "instruction_template", "thinking")
#: The chat's tool settings: the tools enabled, those allowed without asking, the round limit, and
#: "make the model call a tool" (saved with the chat; set from the Chat tab's Tools panel).
TOOL_FIELDS = ("tools", "tools_always", "tool_rounds", "force_tool")
#: Rounds of tool calls one reply may take before the model must answer (a chat's default).
DEFAULT_TOOL_ROUNDS = 8
#: What the model is told when the user skips a call.
DECLINED = "The user declined to run this tool call."
#: Told after the store wrote a chat (the chat) or deleted one (None): (character, chat id, chat).
ChatListener = Callable[[str, str, "Chat | None"], None]


def _attachment(value: Any) -> Attachment | None:
    return value if isinstance(value, Attachment) else Attachment.from_json(value)


def is_chat_file(name: str) -> bool:
    """Whether a file name in a character's folder is a chat (hidden files and temp files are not)."""
    return name.endswith(".json") and not name.startswith(".") and not name.endswith(TEMP_SUFFIX)


@dataclass
class Message:
    role: Role
    content: str
    #: Earlier and later versions of an assistant reply (Regenerate keeps them all).
    versions: list[str] = field(default_factory=list)
    active: int = 0
    #: The active version's figures (tokens, tokens/s, seed...); each version's in ``stats_versions``.
    stats: dict[str, Any] | None = None
    stats_versions: list[dict[str, Any] | None] = field(default_factory=list)
    #: A reasoning model's thinking before this reply (never sent back to the model), and that of
    #: each version. Left out of the file when there is none (older files load as they are).
    reasoning: str = ""
    reasoning_versions: list[str] = field(default_factory=list)
    #: An assistant message's tool calls, OpenAI-shaped (``id``, ``type``, ``function``: ``name``,
    #: ``arguments`` as JSON text). Left out of the file when there are none.
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    #: A ``tool`` message: the call it answers, the tool's name, and how it went
    #: ("done", "error", "skipped").
    tool_call_id: str = ""
    name: str = ""
    status: str = ""
    #: Files and images sent with a user message (the copies are in the chat's files folder).
    attachments: list[Attachment] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.attachments = [a for a in (_attachment(x) for x in self.attachments) if a is not None]
        if not self.versions:
            self.versions = [self.content]
        # One per version (a file from before reasoning was kept has none, or a hand edit too few).
        self.reasoning_versions = (self.reasoning_versions + [""] * len(self.versions))[: len(self.versions)]
        if self.reasoning and not self.reasoning_versions[self.active]:
            self.reasoning_versions[self.active] = self.reasoning
        self.reasoning = self.reasoning_versions[self.active] if 0 <= self.active < len(self.versions) else ""
        # The same for the figures (a file from before they were kept per version has the active one's only).
        self.stats_versions = (self.stats_versions + [None] * len(self.versions))[: len(self.versions)]
        if 0 <= self.active < len(self.versions):
            if self.stats and not self.stats_versions[self.active]:
                self.stats_versions[self.active] = self.stats
            self.stats = self.stats_versions[self.active]

    def set_text(self, text: str) -> None:
        self.content = text
        self.versions[self.active] = text

    def set_reasoning(self, text: str) -> None:
        self.reasoning = text
        self.reasoning_versions[self.active] = text

    def set_stats(self, stats: dict[str, Any] | None) -> None:
        self.stats = stats
        self.stats_versions[self.active] = stats

    def add_version(self, text: str = "") -> None:
        self.versions.append(text)
        self.reasoning_versions.append("")
        self.stats_versions.append(None)
        self.active = len(self.versions) - 1
        self.content = text
        self.reasoning = ""
        self.stats = None

    def drop_last_version(self, back_to: int) -> None:
        """Take back the version :meth:`add_version` added (a Regenerate that never ran), showing ``back_to``."""
        if len(self.versions) > 1:
            self.versions.pop()
            self.reasoning_versions.pop()
            self.stats_versions.pop()
        self.select(back_to)

    def select(self, index: int) -> None:
        self.active = max(0, min(index, len(self.versions) - 1))
        self.content = self.versions[self.active]
        self.reasoning = self.reasoning_versions[self.active]
        self.stats = self.stats_versions[self.active]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not any(self.reasoning_versions):
            del data["reasoning"], data["reasoning_versions"]
        if len(self.versions) == 1:
            del data["stats_versions"]  # one version: ``stats`` says it all
        for key in ("tool_calls", "tool_call_id", "name", "status"):
            if not data[key]:
                del data[key]
        if self.attachments:
            data["attachments"] = [a.to_json() for a in self.attachments]
        else:
            del data["attachments"]
        return data

    def call_names(self) -> dict[str, str]:
        """The tool name of each of this message's calls, by call id."""
        return {c.get("id", ""): (c.get("function") or {}).get("name", "") for c in self.tool_calls}


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
    system_prompt: str = ""
    #: The user's persona: the name the model calls them and what it is told about them.
    persona_name: str = "You"
    persona_bio: str = ""
    #: Instruction template chosen for this chat: a name, "" for the model's own, None if never recorded.
    instruction_template: str | None = None
    #: A reasoning model thinks before it answers (passed as ``enable_thinking`` to a template that reads it).
    thinking: bool = True
    #: The tools the model may call in this chat (names in the toolbox), those that run without asking,
    #: the most rounds of calls one reply may take, and "the next reply must call a tool".
    tools: list[str] = field(default_factory=list)
    tools_always: list[str] = field(default_factory=list)
    tool_rounds: int = DEFAULT_TOOL_ROUNDS
    force_tool: bool = False
    #: Its settings (:func:`settings_of`) as it was loaded or last saved: what the store compares with
    #: the file's to tell whose change is newer (not saved).
    saved_settings: dict[str, dict[str, Any]] | None = field(default=None, init=False, repr=False, compare=False)

    def pending_calls(self) -> list[dict[str, Any]]:
        """The last reply's tool calls that have no result yet (waiting for Run / Skip)."""
        for i in range(len(self.messages) - 1, -1, -1):
            m = self.messages[i]
            if m.role == "assistant":
                answered = {r.tool_call_id for r in self.messages[i + 1 :] if r.role == "tool"}
                return [c for c in m.tool_calls if c.get("id") not in answered]
            if m.role != "tool":
                return []
        return []

    def tool_rounds_used(self) -> int:
        """Replies with tool calls since the user last wrote (the rounds of the current answer)."""
        rounds = 0
        for m in reversed(self.messages):
            if m.role == "user":
                break
            if m.role == "assistant" and m.tool_calls:
                rounds += 1
        return rounds

    def setup(self) -> dict[str, Any]:
        """The chat's set-up (:data:`SETUP_FIELDS`)."""
        return {k: getattr(self, k) for k in SETUP_FIELDS}

    def apply_setup(self, setup: Mapping[str, Any]) -> bool:
        """Take the set-up fields of ``setup`` (others, and values of the wrong type, are left out).

        True if any changed."""
        clean = clean_setup(setup)
        changed = any(getattr(self, k) != v for k, v in clean.items())
        for key, value in clean.items():
            setattr(self, key, value)
        return changed

    def tool_setup(self) -> dict[str, Any]:
        """The chat's tool settings (:data:`TOOL_FIELDS`)."""
        return {k: copy.copy(getattr(self, k)) for k in TOOL_FIELDS}

    def apply_tool_setup(self, setup: Mapping[str, Any]) -> bool:
        """Take the tool settings of ``setup`` (wrong types left out). True if any changed."""
        clean = clean_setup(setup, TOOL_FIELDS)
        changed = any(getattr(self, k) != v for k, v in clean.items())
        for key, value in clean.items():
            setattr(self, key, value)
        return changed

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["saved_settings"]
        data["messages"] = [m.to_json() for m in self.messages]
        data["internal"], data["visible"] = pairs(self.messages)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], *, chat_id: str, character: str) -> Chat:
        if "messages" in data:
            messages = [
                Message(**{k: v for k, v in m.items() if k in Message.__dataclass_fields__}) for m in data["messages"]
            ]
        elif "internal" in data:  # text-generation-webui's format
            messages = []
            for user, bot in data["internal"]:
                if user and user != "<|BEGIN-VISIBLE-CHAT|>":
                    messages.append(Message("user", user))
                if bot:
                    messages.append(Message("assistant", bot))
        else:
            raise SettingsError("This file is not a chat: it has neither 'messages' nor 'internal'.")
        fields = {k: data[k] for k in ("title", "context_start", "created", "updated") if k in data}
        chat = cls(id=chat_id, character=character, messages=messages, **fields)
        chat.apply_setup(data)
        chat.apply_tool_setup(data)
        return chat


#: A chat's settings, which the page may change while a reply is being written into the chat (the turn holds
#: the chat and saves it as the reply grows): each group is taken whole from the one who changed it last.
SETTINGS_GROUPS = {"setup": SETUP_FIELDS, "tools": TOOL_FIELDS, "title": ("title",)}
#: Each chat file's settings as this process last wrote or read them (by absolute path).
_settings_on_disk: dict[str, dict[str, dict[str, Any]]] = {}
#: The chat files a reply is being written into now (by absolute path; a count, for safety), and the
#: condition a change waiting for one to end waits on.
_being_written: Counter[str] = Counter()
_written_done = threading.Condition()
#: How long a change to a chat's messages waits for the reply being written into it to end (a Stop
#: pressed just before takes a moment to reach the model) before it is refused.
BUSY_WAIT_SECONDS = 3.0


def settings_of(chat: Chat) -> dict[str, dict[str, Any]]:
    """``chat``'s settings by group (copies)."""
    return {group: {k: copy.deepcopy(getattr(chat, k)) for k in fields} for group, fields in SETTINGS_GROUPS.items()}


def clean_setup(setup: Mapping[str, Any], fields: tuple[str, ...] = SETUP_FIELDS) -> dict[str, Any]:
    """The set-up fields of ``setup`` that have the right type (a hand-edited file may have others)."""
    clean: dict[str, Any] = {}
    for key in fields:
        value = setup.get(key)
        if key in ("thinking", "force_tool"):
            if isinstance(value, bool):
                clean[key] = value
        elif key in ("tools", "tools_always"):
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                clean[key] = list(value)
        elif key == "tool_rounds":
            if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100:
                clean[key] = value
        elif isinstance(value, str) or (key == "instruction_template" and value is None and key in setup):
            clean[key] = value
    return clean


def pairs(messages: list[Message]) -> tuple[list[list[str]], list[list[str]]]:
    """text-generation-webui's [[user, bot], ...] view of a message list (system messages left out)."""
    internal: list[list[str]] = []
    for m in messages:
        if m.role == "user":
            internal.append([m.content, ""])
        elif m.role == "assistant" and (m.content or not m.tool_calls):  # a bare tool call is no reply
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
        self._listeners: list[ChatListener] = []
        # A write and the listeners' view of it happen together: two saves of one chat at once
        # (a streaming reply and an edit) cannot leave a listener with the older one.
        self._lock = threading.RLock()

    def add_listener(self, listener: ChatListener) -> None:
        """Call ``listener`` after every save and delete (e.g. to keep a search index up to date)."""
        self._listeners.append(listener)

    def character_folder(self, character: str) -> Path:
        return self.folder / safe_name(character, what="character name")

    def path_of(self, character: str, chat_id: str) -> Path:
        return self.character_folder(character) / f"{safe_name(chat_id, what='chat id')}.json"

    def files(self, character: str, chat_id: str) -> AttachmentFiles:
        """The folder of a chat's attached files (``<chat id>.files`` beside the chat)."""
        return AttachmentFiles(self.character_folder(character) / f"{safe_name(chat_id, what='chat id')}.files")

    def new(self, character: str, mode: str = "instruct") -> Chat:
        chat_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        return Chat(id=chat_id, character=character, mode=mode)

    @contextmanager
    def writing(self, chat: Chat) -> Iterator[None]:
        """A reply is being written into ``chat`` (and saved as it grows) for as long as this lasts: changes
        to its messages from elsewhere (:meth:`save_change`, :meth:`delete`) wait for it or are refused."""
        key = os.path.abspath(self.path_of(chat.character, chat.id))
        with _written_done:
            _being_written[key] += 1
        try:
            yield
        finally:
            with _written_done:
                _being_written[key] -= 1
                if _being_written[key] <= 0:
                    del _being_written[key]
                _written_done.notify_all()

    def require_idle(self, path: Path, wait: float | None = None) -> None:
        """Wait up to ``wait`` seconds (:data:`BUSY_WAIT_SECONDS`) for a reply being written into the chat at
        ``path`` to end; :class:`ChatBusyError` if it still runs. A change to a chat calls this before it
        loads the chat, so that it changes the reply's last save, not a copy from before it."""
        key = os.path.abspath(path)
        with _written_done:
            timeout = BUSY_WAIT_SECONDS if wait is None else wait
            if not _written_done.wait_for(lambda: key not in _being_written, timeout=timeout):
                raise ChatBusyError(
                    "A reply is being written into this chat: wait for it to finish, or press Stop (Esc), "
                    "then try again. Nothing was changed.",
                    key="chat.busy_writing",
                )

    def save_change(self, chat: Chat) -> None:
        """Save a change the user made to ``chat``'s messages (an edit, Remove last, another version).

        A reply being written into the chat would put the old messages back at its next save: the change
        waits for it to end (:data:`BUSY_WAIT_SECONDS`, for a Stop just pressed) and is refused with
        :class:`ChatBusyError` if it does not. The caller's ``chat`` is then not saved (load it again to
        show what is on disk). Load ``chat`` after :meth:`require_idle`, or the change is made to a copy
        older than the reply's last save."""
        self.require_idle(self.path_of(chat.character, chat.id))
        self.save(chat)

    def save(self, chat: Chat, *, touch: bool = True) -> None:
        """Write ``chat``; ``touch``: it counts as updated now (the list shows the newest first).

        A change of its set-up alone is saved with ``touch=False``: choosing a system prompt does
        not move an old chat to the top of the list.
        """
        if touch:
            chat.updated = time.time()
        path = self.path_of(chat.character, chat.id)
        with file_lock(path), self._lock:
            self._take_newer_settings(chat, path)
            text = json.dumps(chat.to_json(), ensure_ascii=False, indent=1)
            atomic_write_text(path, text)
            chat.saved_settings = _settings_on_disk[os.path.abspath(path)] = settings_of(chat)
            for listener in self._listeners:
                listener(chat.character, chat.id, chat)

    @staticmethod
    def _take_newer_settings(chat: Chat, path: Path) -> None:
        """A group of ``chat``'s settings it has not changed since it was loaded or saved, but that the file
        has changed since (the set-up typed while a reply streams, saved by :meth:`keep_setup`), is taken
        from the file: a reply's saves never put back the set-up the chat was sent with."""
        base, on_disk = chat.saved_settings, _settings_on_disk.get(os.path.abspath(path))
        if base is None or on_disk is None:
            return
        mine = settings_of(chat)
        for group, fields in SETTINGS_GROUPS.items():
            if mine[group] == base[group] and on_disk[group] != base[group]:
                for key in fields:
                    setattr(chat, key, copy.deepcopy(on_disk[group][key]))

    def keep_setup(self, character: str, chat_id: str, setup: dict[str, Any]) -> None:
        """Save a changed set-up into the chat on disk (``touch=False``), unless a request that came in
        later already did (see :func:`in_order`); read, change and write happen under the store's lock,
        so a message saved meanwhile is not lost. :class:`ChatNotFoundError` for a chat not on disk."""
        with in_order(self.path_of(character, chat_id), ["setup"]) as fresh, self._lock:
            if not fresh:
                return
            chat = self.load(character, chat_id)
            if chat.apply_setup(setup):
                self.save(chat, touch=False)

    def load(self, character: str, chat_id: str) -> Chat:
        path = self.path_of(character, chat_id)
        chat = self._read(path, character, chat_id)
        chat.saved_settings = settings_of(chat)
        # no lock (a listener of a save may load): a save's own record, made under its lock, stays
        _settings_on_disk.setdefault(os.path.abspath(path), chat.saved_settings)
        return chat

    @staticmethod
    def _read(path: Path, character: str, chat_id: str) -> Chat:
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
            raise SettingsError(
                f"The chat file {path.name} does not hold a valid chat ({exc}); it was left as it is."
            ) from exc

    def list(self, character: str) -> list[ChatInfo]:
        folder = self.character_folder(character)
        infos, damaged = [], []
        for path in folder.glob("*.json") if folder.is_dir() else []:
            if not is_chat_file(path.name):
                continue
            try:
                chat = self.load(character, path.stem)
            except WebUIError as exc:
                # Listed (after the readable ones) under its file name, so it is not silently hidden;
                # opening it says why it cannot be read. It is never rewritten or deleted for the user.
                damaged.append(
                    ChatInfo(
                        path.stem,
                        character,
                        f"⚠ unreadable chat file {path.name}",
                        path.stat().st_mtime,
                        0,
                        unreadable=exc.message,
                    )
                )
                continue
            infos.append(ChatInfo(chat.id, character, chat.title, chat.updated, len(chat.messages)))
        return sorted(infos, key=lambda i: i.updated, reverse=True) + sorted(
            damaged, key=lambda i: i.updated, reverse=True
        )

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
        """Delete a chat and its files; :class:`ChatBusyError` while a reply is being written into it (its
        next save would bring it back)."""
        path = self.path_of(character, chat_id)
        self.require_idle(path)
        with file_lock(path), self._lock:
            try:
                path.unlink()
            except FileNotFoundError:
                raise ChatNotFoundError(f"There is no chat {chat_id!r} for {character!r}.") from None
            _settings_on_disk.pop(os.path.abspath(path), None)
            shutil.rmtree(self.files(character, chat_id).folder, ignore_errors=True)
            for listener in self._listeners:
                listener(character, chat_id, None)

    def branch(self, chat: Chat, at: int | None = None) -> Chat:
        """A new chat, saved, with a copy of the first ``at`` messages of ``chat`` (all when None).

        The copied messages keep their versions and stats; the title says it is a branch.
        :class:`BranchRangeError` for a number outside 1..len(messages).
        """
        n = len(chat.messages) if at is None else at
        if not 1 <= n <= len(chat.messages):
            raise BranchRangeError(
                f"Pick a message number from 1 to {len(chat.messages)}.", key="chat.branch_range", n=len(chat.messages)
            )
        branch = self.new(chat.character, chat.mode)
        branch.apply_setup(chat.setup())
        branch.messages = copy.deepcopy(chat.messages[:n])
        branch.title = f"{chat.title} (branch)"
        self._copy_files(chat, branch)
        self.save(branch)
        return branch

    def prune_files(self, chat: Chat) -> int:
        """Delete stored attachment copies no message of ``chat`` names any more (after a message with
        files was removed). Returns how many files went."""
        folder = self.files(chat.character, chat.id).folder
        if not folder.is_dir():
            return 0
        kept = {n for m in chat.messages for a in m.attachments for n in (a.file, f"{a.file}.txt")}
        removed = 0
        for path in folder.iterdir():
            if path.is_file() and path.name not in kept:
                path.unlink(missing_ok=True)
                removed += 1
        if not any(folder.iterdir()):
            folder.rmdir()
        return removed

    def _copy_files(self, source: Chat, target: Chat) -> None:
        """Give ``target`` its own copies of the attached files its messages name (hard links when
        the file system allows: the copies are never modified, only deleted with their chat)."""
        src, dst = self.files(source.character, source.id), self.files(target.character, target.id)
        for message in target.messages:
            for a in message.attachments:
                for name in (a.file, f"{a.file}.txt"):
                    here, there = src.folder / name, dst.folder / name
                    if not here.is_file() or there.exists():
                        continue
                    there.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.link(here, there)
                    except OSError:
                        atomic_write_bytes(there, here.read_bytes())

    def import_file(self, character: str, raw: bytes) -> Chat:
        """Import a chat JSON file (ours or text-generation-webui's), or our zip export (the chat with its
        attached files), as a new chat."""
        files: dict[str, bytes] = {}
        if raw[:4] == b"PK\x03\x04":
            raw, files = _read_chat_zip(raw)
        try:
            data = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"The file is not a JSON chat: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError("The file does not hold a chat.")
        fresh = self.new(character)
        chat = Chat.from_json(data, chat_id=fresh.id, character=character)
        chat.title = data.get("title") or "Imported chat"
        folder = self.files(character, chat.id).folder
        wanted = {n for m in chat.messages for a in m.attachments for n in (a.file, f"{a.file}.txt")}
        for name, content in files.items():
            if name in wanted:
                atomic_write_bytes(folder / safe_name(name, what="attachment file"), content)
        self.save(chat)
        return chat


#: Bounds of an imported chat zip (it is user input).
MAX_ZIP_ENTRIES = 1000
MAX_ZIP_BYTES = 256 * 1024 * 1024


def _read_chat_zip(raw: bytes) -> tuple[bytes, dict[str, bytes]]:
    """The chat file and attached files (by name) of a zip export; bounded, names checked."""
    import io
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_ENTRIES or sum(i.file_size for i in infos) > MAX_ZIP_BYTES:
            raise SettingsError("The zip is too large to be a chat export (too many or too big files).")
        chat = archive.read("chat.json")
        files: dict[str, bytes] = {}
        for info in infos:
            name = info.filename
            if name.startswith("files/") and not info.is_dir():
                base = name[len("files/") :]
                if "/" not in base and "\\" not in base and base not in ("", ".", ".."):
                    files[base] = archive.read(info)
        return chat, files
    except KeyError:
        raise SettingsError("The zip has no chat.json: it is not a chat export of this app.") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise SettingsError(f"The zip cannot be read: {exc}") from exc
