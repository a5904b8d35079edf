"""The plain data of the Chat tab's tools: what a provider lists and what a call returns."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

from webui.agents.types import ToolSpec


@dataclass(frozen=True)
class ToolInfo:
    """A tool as the Chat tab lists it: usable (``spec``), or why not (``error``)."""

    #: The name the model calls it by (unique in the toolbox).
    name: str
    #: Where it comes from, for the list: a tool file's name ("calculate.py") or "mcp: <server>".
    source: str
    description: str = ""
    #: It only reads (the user may allow read-only tools to run without asking).
    read_only: bool = False
    spec: ToolSpec | None = None
    #: Why it cannot be used (a tool file that does not import, an MCP server that is down).
    error: str | None = None


@dataclass
class ToolResult:
    """What a call gave back, as text for the model."""

    text: str
    #: The tool failed (raised, timed out, bad arguments): ``text`` says how.
    error: bool = False
    #: ``text`` was cut to the size limit (a notice is at its end).
    truncated: bool = False


class ToolProvider(Protocol):
    """A source of tools: the tool files, or one MCP server."""

    def tools(self) -> list[ToolInfo]:
        """Every tool it offers, and the broken ones with their error."""
        ...

    def call(self, name: str, arguments: dict[str, Any], cancel: threading.Event, timeout: float) -> ToolResult:
        """Run tool ``name`` (one of ``tools()``) with checked ``arguments``; stop when ``cancel`` is set
        or after ``timeout`` seconds (an error result, never an exception)."""
        ...
