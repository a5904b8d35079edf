"""An MCP server for the tests that exits (code 3) right after answering its first call."""

from __future__ import annotations

import os
import sys
import threading

from mcp.server.mcpserver import MCPServer

server = MCPServer("dying", log_level="WARNING")


def _die() -> None:
    print("dying after the first call", file=sys.stderr, flush=True)
    os._exit(3)


@server.tool()
def hello(name: str) -> str:
    """Greet, then exit a moment later."""
    threading.Timer(0.2, _die).start()
    return f"hello {name}"


if __name__ == "__main__":
    server.run()
