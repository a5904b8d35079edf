"""Chat search: an SQLite FTS5 index derived from the chat files.

The chat files (``logs/chats/<character>/<id>.json``, :class:`~webui.chat.history.ChatStore`) are
the only source of truth. The index (``logs/chats/.index.sqlite``) is a cache of what they say:
delete it, or let it break, and the next search rebuilds it from the files.

Each search first brings the character's part of the index up to date with one ``os.scandir``
pass over its folder: a file whose size, mtime or inode differs from what was indexed is read
again, a file that is gone is dropped. With nothing changed, a search reads no chat file, so it
stays instant with thousands of chats. Saves, renames and deletes made through the store update
the index at once (a listener on the store), from the chat in memory.

Matching is a case-insensitive substring match on the title and on the messages' text, which
is what a person typing into a search box expects: the FTS5 ``trigram`` tokenizer finds any
substring of 3+ characters, in any script (Russian, Chinese...); shorter queries fall back to a
``LIKE`` over the indexed text (still no chat file read). Texts are case-folded by Python before
they are indexed, so the folding is the same for every script.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from webui.chat.history import Chat, ChatInfo, ChatStore, is_chat_file
from webui.errors import ChatIndexError, WebUIError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Bumped when the schema changes: an index of another version is rebuilt from the files.
SCHEMA_VERSION = 1
#: Queries shorter than this (in characters) cannot use the trigram index.
TRIGRAM = 3

_SCHEMA = f"""
PRAGMA user_version = {SCHEMA_VERSION};
CREATE TABLE IF NOT EXISTS chats (
    id INTEGER PRIMARY KEY,
    character TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    -- the file as it was when indexed: any difference means it is read again
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    title TEXT NOT NULL,
    updated REAL NOT NULL,
    messages INTEGER NOT NULL,
    -- why the file cannot be read (NULL: a readable chat)
    unreadable TEXT,
    UNIQUE (character, chat_id)
);
CREATE VIRTUAL TABLE IF NOT EXISTS chat_text USING fts5(title, body, tokenize = 'trigram');
"""


@dataclass(frozen=True)
class FileStamp:
    """What tells that a chat file changed without reading it."""

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino)


class ChatIndex:
    """Full-text search over the chats of a :class:`ChatStore`, kept in ``db_path``.

    Thread-safe: Gradio runs handlers in threads; one lock orders every use of the index and
    each use opens its own connection (cheap), so a deleted index file is simply made again.
    """

    def __init__(self, db_path: Path, store: ChatStore) -> None:
        self.db_path = Path(db_path)
        self.store = store
        self._lock = threading.RLock()
        store.add_listener(self._on_change)

    # --- queries --------------------------------------------------------------------------------
    def search(self, character: str, query: str = "") -> list[ChatInfo]:
        """The chats of ``character`` whose title or text contains ``query`` (case-insensitive).

        Newest first, as :meth:`ChatStore.list`. An empty query lists every chat, unreadable files
        last (so a damaged file is not silently hidden); a query never matches an unreadable file.
        """
        folder = self.store.character_folder(character)  # also checks the name
        needle = query.strip().casefold()

        def run(db: sqlite3.Connection) -> list[tuple[str, str, float, int, str | None]]:
            self._refresh(db, character, folder)
            columns = "SELECT chat_id, title, updated, messages, unreadable FROM chats WHERE character = ?"
            if not needle:
                return db.execute(columns, (character,)).fetchall()
            # The text search runs first, as a subquery: written as a join, SQLite chose to try each
            # chat of the character against the index in turn (0.5 s for 2,000 chats, not 20 ms).
            if len(needle) >= TRIGRAM:
                phrase = '"' + needle.replace('"', '""') + '"'  # one FTS5 string: no query syntax
                return db.execute(
                    f"{columns} AND unreadable IS NULL AND id IN (SELECT rowid FROM chat_text WHERE chat_text MATCH ?)",
                    (character, phrase),
                ).fetchall()
            # Too short for a trigram: a scan of the indexed text (still no chat file read).
            pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            return db.execute(
                f"{columns} AND unreadable IS NULL AND id IN (SELECT rowid FROM chat_text "
                "WHERE title LIKE ? ESCAPE '\\' OR body LIKE ? ESCAPE '\\')",
                (character, pattern, pattern),
            ).fetchall()

        infos = [
            ChatInfo(chat_id, character, title, updated, messages, unreadable)
            for chat_id, title, updated, messages, unreadable in self._use(run)
        ]
        readable = sorted((i for i in infos if i.unreadable is None), key=lambda i: i.updated, reverse=True)
        damaged = sorted((i for i in infos if i.unreadable is not None), key=lambda i: i.updated, reverse=True)
        return readable + damaged

    def refresh(self, character: str) -> None:
        """Bring the index of ``character``'s chats up to date with the files (search does it too)."""
        folder = self.store.character_folder(character)
        self._use(lambda db: self._refresh(db, character, folder))

    # --- keeping it up to date ------------------------------------------------------------------
    def _refresh(self, db: sqlite3.Connection, character: str, folder: Path) -> None:
        on_disk: dict[str, FileStamp] = {}
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if is_chat_file(entry.name) and entry.is_file():
                        try:
                            on_disk[entry.name[: -len(".json")]] = FileStamp.of(entry.stat())
                        except FileNotFoundError:  # deleted while we looked
                            continue
        except (FileNotFoundError, NotADirectoryError):
            pass  # no chats yet: every indexed one is gone
        indexed = {
            chat_id: FileStamp(size, mtime_ns, inode)
            for chat_id, size, mtime_ns, inode in db.execute(
                "SELECT chat_id, size, mtime_ns, inode FROM chats WHERE character = ?", (character,)
            )
        }
        for chat_id in indexed.keys() - on_disk.keys():
            self._drop(db, character, chat_id)
        for chat_id, stamp in on_disk.items():
            if indexed.get(chat_id) != stamp:
                self._read(db, character, chat_id, stamp)

    def _read(self, db: sqlite3.Connection, character: str, chat_id: str, stamp: FileStamp) -> None:
        try:
            chat = self.store.load(character, chat_id)
        except (WebUIError, OSError) as exc:
            # Listed under its file name, as ChatStore.list does; read again once the file changes.
            reason = exc.message if isinstance(exc, WebUIError) else (exc.strerror or str(exc))
            self._put(
                db,
                character,
                chat_id,
                stamp,
                title=f"⚠ unreadable chat file {chat_id}.json",
                updated=stamp.mtime_ns / 1e9,
                messages=0,
                body="",
                unreadable=reason,
            )
            return
        self._put_chat(db, chat, stamp)

    def _put_chat(self, db: sqlite3.Connection, chat: Chat, stamp: FileStamp) -> None:
        body = "\n".join(m.content for m in chat.messages)
        self._put(
            db,
            chat.character,
            chat.id,
            stamp,
            title=chat.title,
            updated=chat.updated,
            messages=len(chat.messages),
            body=body,
            unreadable=None,
        )

    @staticmethod
    def _put(
        db: sqlite3.Connection,
        character: str,
        chat_id: str,
        stamp: FileStamp,
        *,
        title: str,
        updated: float,
        messages: int,
        body: str,
        unreadable: str | None,
    ) -> None:
        db.execute(
            "INSERT INTO chats (character, chat_id, size, mtime_ns, inode, title, updated, messages, unreadable)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (character, chat_id) DO UPDATE SET"
            " size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode,"
            " title = excluded.title, updated = excluded.updated, messages = excluded.messages,"
            " unreadable = excluded.unreadable",
            (character, chat_id, stamp.size, stamp.mtime_ns, stamp.inode, title, updated, messages, unreadable),
        )
        (rowid,) = db.execute(
            "SELECT id FROM chats WHERE character = ? AND chat_id = ?", (character, chat_id)
        ).fetchone()
        db.execute("DELETE FROM chat_text WHERE rowid = ?", (rowid,))
        db.execute(
            "INSERT INTO chat_text (rowid, title, body) VALUES (?, ?, ?)", (rowid, title.casefold(), body.casefold())
        )

    @staticmethod
    def _drop(db: sqlite3.Connection, character: str, chat_id: str) -> None:
        row = db.execute("SELECT id FROM chats WHERE character = ? AND chat_id = ?", (character, chat_id)).fetchone()
        if row is not None:
            db.execute("DELETE FROM chat_text WHERE rowid = ?", row)
            db.execute("DELETE FROM chats WHERE id = ?", row)

    def _on_change(self, character: str, chat_id: str, chat: Chat | None) -> None:
        """The store saved (``chat``) or deleted (None) a chat: index it from memory, no re-read.

        Called by the store right after the write, under its lock. The index is only a cache: if it
        cannot be written now, the chat is still saved and the next search finds the file changed
        and reads it - so a failure here is logged, never raised into the save.
        """

        def run(db: sqlite3.Connection) -> None:
            if chat is None:
                self._drop(db, character, chat_id)
                return
            try:
                stamp = FileStamp.of(os.stat(self.store.path_of(character, chat_id)))
            except FileNotFoundError:
                return
            self._put_chat(db, chat, stamp)

        try:
            self._use(run)
        except ChatIndexError as exc:
            log.warning("%s It catches up on the next search.", exc.message)

    # --- the database ---------------------------------------------------------------------------
    def _use(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on a connection to an index of this schema, in one transaction.

        A damaged index, or one of another schema version, is deleted and made again: it holds
        nothing the chat files do not. An index that cannot be used at all (a read-only or full
        disk) is an :class:`ChatIndexError`.
        """
        with self._lock:
            for attempt in (1, 2):
                try:
                    db = self._open()
                    try:
                        with db:  # commit, or roll back on an exception
                            return work(db)
                    finally:
                        db.close()
                except sqlite3.DatabaseError as exc:
                    busy = getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                    if attempt == 2 or busy:
                        raise self._unavailable(exc) from exc
                    log.warning("Rebuilding the chat search index %s (%s).", self.db_path, exc)
                    self._delete_files()
                except OSError as exc:  # its folder cannot be made, or an old index cannot be deleted
                    raise self._unavailable(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _unavailable(self, exc: Exception) -> ChatIndexError:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return ChatIndexError(
            f"The chat search index {self.db_path} cannot be used ({detail}).",
            key="chat.index_unavailable",
            path=str(self.db_path),
            detail=detail,
        )

    def _open(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        if not self.db_path.exists():
            self._delete_files()  # a journal left beside a deleted index must not be replayed into a new one
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                db.executescript("DROP TABLE IF EXISTS chats; DROP TABLE IF EXISTS chat_text;" + _SCHEMA)
            db.isolation_level = "DEFERRED"  # from here on, `with db` is one transaction
        except BaseException:
            db.close()
            raise
        return db

    def _delete_files(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(f"{self.db_path}{suffix}")
            except FileNotFoundError:
                pass
