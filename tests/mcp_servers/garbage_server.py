"""Not an MCP server: prints text that is not JSON-RPC on stdout, then waits for its stdin to close."""

from __future__ import annotations

import sys

print("Welcome to the garbage server! This is not JSON-RPC.", flush=True)
print("{not json either", flush=True)
sys.stdin.read()
