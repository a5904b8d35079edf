"""Chat downloads: a chat as Markdown or as our JSON file, written into the export folder.

The export folder (``logs/exports``) holds what the browser fetches after a download button is
pressed; files there are written atomically like every other file of the app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from webui.chat.history import Chat
from webui.storage import atomic_write_text, safe_name

ExportKind = Literal["json", "md"]


def chat_markdown(chat: Chat, character_name: str, user_name: str) -> str:
    """The chat as Markdown: its title, then each user and assistant message under its speaker."""
    names = {"user": user_name, "assistant": character_name}
    lines = [f"# {chat.title}", ""]
    for m in chat.messages:
        if m.role in names:
            lines += [f"**{names[m.role]}:**", "", m.content, ""]
    return "\n".join(lines)


def chat_json(chat: Chat) -> str:
    """The chat as its JSON file (the same text a saved chat holds; importable again)."""
    return json.dumps(chat.to_json(), ensure_ascii=False, indent=1)


def export_chat(chat: Chat, folder: Path, kind: ExportKind, *, character_name: str, user_name: str) -> Path:
    """Write ``chat`` into ``folder`` as ``<chat id>.json`` or ``<chat id>.md``; the file's path."""
    path = Path(folder) / f"{safe_name(chat.id, what='chat id')}.{kind}"
    text = chat_json(chat) if kind == "json" else chat_markdown(chat, character_name, user_name)
    atomic_write_text(path, text)
    return path
