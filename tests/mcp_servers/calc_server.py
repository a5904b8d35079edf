"""An MCP server for the tests, written with the SDK's MCPServer (FastMCP in mcp 1.x).

``python calc_server.py`` serves over stdio; ``python calc_server.py --http PORT`` serves Streamable
HTTP on 127.0.0.1:PORT at ``/mcp``.
"""

from __future__ import annotations

import sys
import time

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

server = MCPServer("calc", log_level="WARNING")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Return the text in capital letters."""
    return text.upper()


@server.tool()
def slow(seconds: float) -> str:
    """Sleep, then answer (a tool that runs past its timeout)."""
    time.sleep(seconds)
    return "done"


@server.tool()
def flood(size: int) -> str:
    """Answer with ``size`` characters (a server that sends megabytes)."""
    return "x" * size


@server.tool()
def fail(reason: str) -> str:
    """Raise (the result comes back with isError)."""
    raise ValueError(reason)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
