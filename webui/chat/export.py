"""Chat downloads: a chat as Markdown or as our JSON file, written into the export folder.

The export folder (``logs/exports``) holds what the browser fetches after a download button is
pressed; files there are written atomically like every other file of the app.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Literal

from webui.chat.attachments import AttachmentFiles
from webui.chat.history import Chat, Message
from webui.storage import atomic_write_bytes, atomic_write_text, safe_name

ExportKind = Literal["json", "md", "zip"]
#: In a zip export: the chat file and the folder of its attached files.
ZIP_CHAT = "chat.json"
ZIP_FILES = "files/"


def chat_markdown(chat: Chat, character_name: str, user_name: str) -> str:
    """The chat as Markdown: its title, then each user and assistant message under its speaker; a reply's
    tool calls follow it, each with its arguments and its result (or that it was skipped or is waiting)."""
    names = {"user": user_name, "assistant": character_name}
    results = {m.tool_call_id: m for m in chat.messages if m.role == "tool"}
    lines = [f"# {chat.title}", ""]
    for m in chat.messages:
        if m.role not in names:
            continue
        if m.content or not m.tool_calls or m.attachments:
            lines += [f"**{names[m.role]}:**", ""]
            lines += [f"- attached: {a.describe()}" for a in m.attachments]
            lines += [""] if m.attachments else []
            lines += [m.content, ""]
        for call in m.tool_calls if m.role == "assistant" else []:
            lines += _call_markdown(call, results.get(str(call.get("id", ""))))
    return "\n".join(lines)


def _call_markdown(call: dict[str, Any], result: Message | None) -> list[str]:
    function = call.get("function") or {}
    arguments = str(function.get("arguments", "") or "{}")
    try:
        arguments = json.dumps(json.loads(arguments), ensure_ascii=False, indent=2)
    except (json.JSONDecodeError, RecursionError):
        pass
    lines = [f"**Tool call: `{function.get('name', '')}`**", "", _fenced(arguments, "json"), ""]
    if result is None:
        return [*lines, "*No result (the call was waiting for Run or Skip).*", ""]
    how = {"skipped": " (skipped)", "error": " (error)"}.get(result.status, "")
    return [*lines, f"**Result{how}:**", "", _fenced(result.content), ""]


def _fenced(text: str, lang: str = "") -> str:
    """``text`` in a code block whose fence no run of backticks inside it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def chat_json(chat: Chat) -> str:
    """The chat as its JSON file (the same text a saved chat holds; importable again)."""
    return json.dumps(chat.to_json(), ensure_ascii=False, indent=1)


def chat_zip(chat: Chat, files: AttachmentFiles) -> bytes:
    """The chat file and its attached files in one zip (importable again, attachments included)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(ZIP_CHAT, chat_json(chat))
        for m in chat.messages:
            for a in m.attachments:
                for name in (a.file, f"{a.file}.txt"):
                    path = files.folder / name
                    if path.is_file() and ZIP_FILES + name not in archive.namelist():
                        archive.write(path, ZIP_FILES + name)
    return buffer.getvalue()


def export_chat(
    chat: Chat,
    folder: Path,
    kind: ExportKind,
    *,
    character_name: str,
    user_name: str,
    files: AttachmentFiles | None = None,
) -> Path:
    """Write ``chat`` into ``folder`` as ``<chat id>.json``, ``.md`` or ``.zip`` (with its attached
    ``files``); the file's path."""
    path = Path(folder) / f"{safe_name(chat.id, what='chat id')}.{kind}"
    if kind == "zip":
        atomic_write_bytes(path, chat_zip(chat, files or AttachmentFiles(Path(folder) / "none")))
        return path
    text = chat_json(chat) if kind == "json" else chat_markdown(chat, character_name, user_name)
    atomic_write_text(path, text)
    return path
