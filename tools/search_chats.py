"""Shipped tool: search the user's own chat history (the Chat tab's history search)."""

from webui.tools.files import ToolContext

READ_ONLY = True

#: Most chats returned.
LIMIT = 10


def search_chats(query: str, context: ToolContext) -> list[dict] | str:
    """Search the user's earlier chats in this app for words or a phrase; returns the matching chats, newest first.

    Args:
        query: The words to look for.
    """
    if context.search_chats is None:
        raise RuntimeError("Chat search is not available in this app.")
    found = context.search_chats(query, LIMIT)
    return found if found else f"No chat matches '{query}'."
