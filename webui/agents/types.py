"""The plain data of tool calling, shared by the formats, the request engine and the API shapes.

OpenAI's wire shapes are the reference: a tool is a function with a JSON-schema ``parameters``
object; a call has an ``id``, the function's ``name`` and its ``arguments`` as a JSON *string*.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call."""

    name: str
    description: str = ""
    #: JSON schema of the arguments object (``{"type": "object", "properties": ...}``).
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool = False

    def openai(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry (what chat templates read as ``tools``)."""
        function: dict[str, Any] = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolChoice:
    """``tool_choice``: ``auto`` (the model decides), ``none``, ``required`` (at least one call), or
    ``function`` (this named function must be called)."""

    mode: Literal["auto", "none", "required", "function"] = "auto"
    name: str | None = None

    @property
    def forced(self) -> bool:
        """A call must come out: the output is constrained from the first token."""
        return self.mode in ("required", "function")


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class ToolCall:
    """One call the model made."""

    name: str
    #: The arguments as JSON text (OpenAI sends a string; it parses as an object).
    arguments: str = "{}"
    id: str = field(default_factory=new_call_id)

    def args(self) -> Any:
        return json.loads(self.arguments)

    def openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class ParsedReply:
    """A model's whole output split into what the user reads and the calls it made."""

    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass
class ToolStreamEvent:
    """What a streaming tool-call parser hands out as text arrives.

    Either ``content`` (text for the user, safe to show now) or a piece of a call: the first event
    of call ``index`` has its ``id`` and ``name``; later ones add to its ``arguments`` text.
    """

    content: str = ""
    index: int | None = None
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class CallCollector:
    """Tool calls put together from their pieces, by index: a parser's events or a server's deltas.

    The first piece of a call brings its id and name (a server may repeat them in every piece: only
    the first counts); the argument text is the pieces joined.
    """

    def __init__(self) -> None:
        self._calls: dict[int, ToolCall] = {}

    def add(self, index: int, id: str | None, name: str | None, arguments: str) -> None:
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = ToolCall(name=name or "", arguments="")
            if id:
                call.id = id
        elif name and not call.name:
            call.name = name
        call.arguments += arguments

    def calls(self) -> list[ToolCall]:
        """The calls in index order."""
        return [c for _, c in sorted(self._calls.items())]
