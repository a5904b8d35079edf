"""Shipped tool: read a text file inside the one folder the user chose (setting tools_folder)."""

from webui.tools.confine import read_text
from webui.tools.files import ToolContext

READ_ONLY = True


def read_file(path: str, context: ToolContext) -> str:
    """Read a text file from the user's shared folder.

    Args:
        path: The file's path relative to the shared folder, e.g. "notes/todo.txt" (list_files shows what is there).
    """
    text, left = read_text(context.allowed_folder, path, context.max_read_bytes)
    if left:
        text += f"\n[... the file has {left} more bytes that were not read]"
    return text
