"""Shipped tool: list a folder inside the one folder the user chose (setting tools_folder)."""

from webui.tools.confine import list_folder
from webui.tools.files import ToolContext
from webui.units import human_size

READ_ONLY = True


def list_files(context: ToolContext, path: str = ".") -> str:
    """List the files and folders in the user's shared folder or in a folder inside it.

    Args:
        path: A folder relative to the shared folder; "." is the shared folder itself.
    """
    entries, left = list_folder(context.allowed_folder, path)
    if not entries:
        return f"The folder '{path}' is empty."
    lines = [f"{e.name}/" if e.is_dir else f"{e.name} ({human_size(e.size)})" for e in entries]
    if left:
        lines.append(f"[... {left} more entries not listed]")
    return "\n".join(lines)
