"""MCP servers as tool providers: ``mcp.json`` in the user-data folder, one client session per server.

The file has the shape other MCP clients use (Claude Desktop, Cursor, LM Studio)::

    {"mcpServers": {"files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]},
                    "web": {"url": "http://127.0.0.1:8000/mcp", "headers": {"Authorization": "Bearer ..."}}}}

``command`` starts a server over stdio, ``url`` connects over Streamable HTTP; both through the
official ``mcp`` SDK. All sessions live on one background thread with its own asyncio loop; the
app's threads (Gradio handlers, the generation thread) call in with
``asyncio.run_coroutine_threadsafe`` and bounded waits, so a server that hangs, dies or writes
garbage costs its own tools and nothing else.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio
import anyio.abc
import mcp.types as mcp_types
import psutil
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from webui.agents.types import ToolSpec
from webui.errors import SettingsError
from webui.storage import atomic_write_text
from webui.tools.types import ToolInfo, ToolResult

log = logging.getLogger(__name__)

State = Literal["connecting", "ready", "failed", "stopped"]

#: What a provider converts of one call's result; the rest is cut with a notice.
MAX_RESULT_CHARS = 200_000
#: Longest tool name the OpenAI shapes accept.
MAX_TOOL_NAME = 64
#: How long ``stop()`` waits for every server to end (stdio: stdin closed, then SIGTERM, then SIGKILL).
STOP_TIMEOUT = 15.0
EMPTY_CONFIG = '{\n  "mcpServers": {}\n}\n'

_STDIO_KEYS = {"command", "args", "env", "cwd"}
_HTTP_KEYS = {"url", "headers"}
_COMMON_KEYS = {"type", "disabled"}
_HTTP_TYPES = {"http", "streamable-http", "streamableHttp", "streamable_http"}
_CLIENT_INFO = mcp_types.Implementation(name="localllm-webui", version="1")
_T = TypeVar("_T")


# -- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """One entry of ``mcpServers``: a command to run (stdio) or a URL (Streamable HTTP)."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    disabled: bool = False

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "http" if self.url is not None else "stdio"


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings")
    return tuple(value)


def _string_map(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError(f"{what} must be an object of strings")
    return tuple(sorted(value.items()))


def parse_server(name: str, entry: Any) -> ServerConfig:
    """One server's entry, or a ``ValueError`` saying what is wrong with it."""
    if not name.strip():
        raise ValueError("a server needs a name")
    if not isinstance(entry, dict):
        raise ValueError("must be an object with a command or a url")
    unknown = set(entry) - _STDIO_KEYS - _HTTP_KEYS - _COMMON_KEYS
    if unknown:
        known = ", ".join(sorted(_STDIO_KEYS | _HTTP_KEYS | _COMMON_KEYS))
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} (known: {known})")
    kind = entry.get("type")
    if kind == "sse":
        raise ValueError("the old SSE transport is not supported; use the server's Streamable HTTP URL")
    if kind is not None and kind != "stdio" and kind not in _HTTP_TYPES:
        raise ValueError(f"unknown type {kind!r} (stdio or http)")
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise ValueError("disabled must be true or false")
    if ("command" in entry) == ("url" in entry):
        raise ValueError("needs either a command (stdio) or a url (Streamable HTTP)")
    if "command" in entry:
        if kind not in (None, "stdio"):
            raise ValueError(f"type {kind!r} needs a url, not a command")
        if set(entry) & _HTTP_KEYS:
            raise ValueError("headers go with a url, not a command")
        command, cwd = entry["command"], entry.get("cwd")
        if not isinstance(command, str) or not command.strip():
            raise ValueError("command must be a non-empty string")
        if cwd is not None and not isinstance(cwd, str):
            raise ValueError("cwd must be a string")
        return ServerConfig(
            name,
            command=command,
            args=_strings(entry.get("args", []), "args"),
            env=_string_map(entry.get("env", {}), "env"),
            cwd=cwd,
            disabled=disabled,
        )
    if kind == "stdio":
        raise ValueError("type 'stdio' needs a command, not a url")
    if set(entry) & _STDIO_KEYS:
        raise ValueError(f"{sorted(set(entry) & _STDIO_KEYS)[0]} goes with a command, not a url")
    url = entry["url"]
    if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
        raise ValueError("url must be an http:// or https:// address")
    return ServerConfig(name, url=url, headers=_string_map(entry.get("headers", {}), "headers"), disabled=disabled)


def parse_config(text: str) -> dict[str, ServerConfig | str]:
    """Every server of an ``mcp.json`` text: its config, or the message saying why it is unusable.

    Raises :class:`SettingsError` when the file as a whole is unusable (not JSON, no ``mcpServers``
    object).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"mcp.json is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise SettingsError('mcp.json must be an object with an "mcpServers" object: {"mcpServers": {"name": {...}}}')
    servers: dict[str, ServerConfig | str] = {}
    for name, entry in data["mcpServers"].items():
        try:
            servers[name] = parse_server(name, entry)
        except ValueError as exc:
            servers[name] = f"mcp.json: server {name!r}: {exc}"
    return servers


# -- status and tool names -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerStatus:
    """What the Chat tab shows about one server."""

    name: str
    state: State
    #: Why it failed or stopped, or what it is (``"3 tools"`` when ready).
    message: str = ""
    tools: int = 0
    transport: Literal["stdio", "http"] = "stdio"
    #: The server process (stdio), while it runs.
    pid: int | None = None


def tool_name(server: str, tool: str) -> str:
    """The name the model calls an MCP tool by: ``server__tool`` in ``[A-Za-z0-9_-]``, at most 64
    characters (a long one keeps a hash of the whole name, so two long names stay apart)."""
    full = f"{server}__{tool}"
    name = re.sub(r"[^A-Za-z0-9_-]", "_", full)
    if len(name) > MAX_TOOL_NAME:
        digest = hashlib.sha1(full.encode("utf-8")).hexdigest()[:8]
        name = f"{name[: MAX_TOOL_NAME - 9]}_{digest}"
    return name


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(exc: BaseException) -> str:
    """A short, plain message for an exception (the first leaf of an exception group)."""
    while isinstance(getattr(exc, "exceptions", None), tuple) and exc.exceptions:  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = _one_line(str(exc)) or type(exc).__name__
    return text if isinstance(exc, MCPError) else f"{type(exc).__name__}: {text}"


def result_text(result: mcp_types.CallToolResult, limit: int = MAX_RESULT_CHARS) -> ToolResult:
    """A call's content blocks as text for the model, at most ``limit`` characters."""
    parts: list[str] = []
    size, truncated = 0, False
    blocks: list[Any] = list(result.content)
    if not blocks and result.structured_content is not None:
        blocks = [mcp_types.TextContent(type="text", text=json.dumps(result.structured_content, ensure_ascii=False))]
    for block in blocks:
        if isinstance(block, mcp_types.TextContent):
            piece = block.text
        elif isinstance(block, mcp_types.ImageContent):
            piece = "[image omitted]"
        elif isinstance(block, mcp_types.AudioContent):
            piece = "[audio omitted]"
        elif isinstance(block, mcp_types.ResourceLink):
            piece = f"[resource: {block.uri}]"
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            text = getattr(resource, "text", None)
            piece = text if isinstance(text, str) else f"[binary resource omitted: {resource.uri}]"
        else:
            piece = f"[{getattr(block, 'type', 'unknown')} content omitted]"
        room = max(0, limit - size)
        if len(piece) > room:
            parts.append(piece[:room])
            truncated = True
            break
        parts.append(piece)
        size += len(piece) + 1
    text = "\n".join(parts)
    if truncated:
        text += f"\n[… the result was cut at {limit:,} characters]"
    return ToolResult(text=text, error=bool(result.is_error), truncated=truncated)


# -- one server ------------------------------------------------------------------------------------


class _StderrTail:
    """The last lines a stdio server wrote to stderr (for its status), read on a small thread."""

    def __init__(self, name: str) -> None:
        read_fd, write_fd = os.pipe()
        self.writer = os.fdopen(write_fd, "w")
        self.lines: deque[str] = deque(maxlen=20)
        self.ended = threading.Event()
        self._name = name
        threading.Thread(target=self._read, args=(read_fd,), name=f"mcp-stderr-{name}", daemon=True).start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            while line := pipe.readline(4096):  # bounded: a line without an end is read in pieces
                text = line.decode("utf-8", "replace").strip()
                if text:
                    self.lines.append(text)
                    log.debug("mcp %s: %s", self._name, text)
        self.ended.set()

    def close_writer(self) -> None:
        """Our copy of the pipe's write end: the child has its own, so EOF means the server is gone."""
        with contextlib.suppress(OSError):
            self.writer.close()

    def last(self) -> str:
        return _one_line(self.lines[-1]) if self.lines else ""


@dataclass(eq=False)
class _Server:
    config: ServerConfig
    state: State = "connecting"
    message: str = ""
    session: ClientSession | None = None
    #: The tools as listed, by the name the model calls them.
    tools: dict[str, mcp_types.Tool] = field(default_factory=dict)
    pid: int | None = None
    stderr: _StderrTail | None = None
    #: Set by the reader when the server closes the connection or sends something that is not JSON-RPC.
    problem: str | None = None
    task: asyncio.Task[None] | None = None
    #: Holds the live session; cancelled when the server goes away.
    watch: anyio.CancelScope | None = None

    def lost(self, problem: str) -> None:
        """The server went away: "failed" at once (a caller never sees a half-open "ready"), and the
        session winds down."""
        self.problem = self.problem or problem
        self.state, self.message = "failed", self.problem
        if self.watch is not None:
            self.watch.cancel()

    def status(self) -> ServerStatus:
        tools = len(self.tools) if self.state == "ready" else 0
        return ServerStatus(self.config.name, self.state, self.message, tools, self.config.transport, self.pid)


def _children() -> set[int]:
    try:
        return {p.pid for p in psutil.Process().children()}
    except psutil.Error:
        return set()


class McpToolProvider:
    """The tools of one MCP server (a :class:`~webui.tools.types.ToolProvider`)."""

    def __init__(self, servers: McpServers, server: _Server) -> None:
        self._servers = servers
        self._server = server
        self.name = server.config.name

    def tools(self) -> list[ToolInfo]:
        server = self._server
        source = f"mcp: {self.name}"
        down = None if server.state == "ready" else f"MCP server {self.name} is {server.state}: {server.message}"
        infos = []
        for name, tool in server.tools.items():
            description = tool.description or ""
            read_only = bool(tool.annotations and tool.annotations.read_only_hint)
            spec = None if down else ToolSpec(name, description, dict(tool.input_schema))
            infos.append(ToolInfo(name, source, description, read_only, spec, down))
        return infos

    def call(self, name: str, arguments: dict[str, Any], cancel: threading.Event, timeout: float) -> ToolResult:
        return self._servers.call_tool(self._server, name, arguments, cancel, timeout)


class McpServers:
    """The MCP servers of ``mcp.json``: started, watched, listed and stopped together."""

    def __init__(
        self,
        config_path: Path,
        *,
        connect_timeout: float = 60.0,
        max_result_chars: int = MAX_RESULT_CHARS,
    ) -> None:
        self.config_path = Path(config_path)
        self.connect_timeout = connect_timeout
        self.max_result_chars = max_result_chars
        #: Why ``mcp.json`` as a whole cannot be used (then no server runs), or ``None``.
        self.config_error: str | None = None
        self._servers: dict[str, _Server] = {}
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._spawn_lock: asyncio.Lock | None = None
        self._tasks_ending: list[asyncio.Task[None]] = []

    # -- the file ------------------------------------------------------------------------------

    def load_text(self) -> str:
        """The file's text for the editor (an empty config when there is none yet)."""
        try:
            return self.config_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return EMPTY_CONFIG

    def save_text(self, text: str) -> None:
        """Check ``text`` (JSON, the shape, every server's entry) and write it atomically; a bad text
        raises :class:`SettingsError` and leaves the file as it was. Call :meth:`reload` to apply."""
        problems = [entry for entry in parse_config(text).values() if isinstance(entry, str)]
        if problems:
            raise SettingsError("; ".join(problems))
        atomic_write_text(self.config_path, text if text.endswith("\n") else text + "\n")

    def _read_config(self) -> dict[str, ServerConfig | str]:
        self.config_error = None
        try:
            text = self.config_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as exc:
            self.config_error = f"mcp.json cannot be read: {exc}"
            return {}
        try:
            return parse_config(text)
        except SettingsError as exc:
            self.config_error = exc.message
            return {}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Read ``mcp.json`` and connect every server, each on its own (returns at once; see
        :meth:`wait_connected`). A file that cannot be used sets :attr:`config_error` instead."""
        self.reload()

    def reload(self) -> None:
        """Apply ``mcp.json`` as it is now: servers removed or changed stop, new, changed, failed and
        stopped ones start; unchanged running ones keep their session. A file that cannot be used
        sets :attr:`config_error` and changes nothing."""
        with self._lock:
            self._ensure_loop()
            wanted = self._read_config()
            if self.config_error:
                return
            for name, server in list(self._servers.items()):
                entry = wanted.get(name)
                if entry != server.config or server.state in ("failed", "stopped"):
                    self._end(name)
                    del self._servers[name]
            for name, entry in wanted.items():
                if name not in self._servers:
                    self._launch(name, entry)

    def restart(self, name: str) -> None:
        """Stop one server and start it again from the current ``mcp.json``."""
        with self._lock:
            self._ensure_loop()
            entry = self._read_config().get(name)
            if entry is None:
                raise SettingsError(f"There is no MCP server named {name!r} in mcp.json.")
            if name in self._servers:
                self._end(name)
                del self._servers[name]
            self._launch(name, entry)

    def stop(self) -> None:
        """Close every session and end every server process (their status says "stopped"); waits at
        most about ``STOP_TIMEOUT`` seconds. The app calls this when it stops."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            for name in self._servers:
                self._end(name, wait=False)
            tasks, self._tasks_ending = self._tasks_ending, []
            if tasks:
                with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                    self._submit(_gather_quietly(tasks)).result(STOP_TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5.0)
            self._loop = self._thread = None
            atexit.unregister(self.stop)

    def wait_connected(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until no server is still connecting."""
        deadline = time.monotonic() + timeout
        while any(s.state == "connecting" for s in self.status()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    # -- what the app reads ----------------------------------------------------------------------

    def status(self) -> list[ServerStatus]:
        with self._lock:
            return [server.status() for server in self._servers.values()]

    def providers(self) -> list[McpToolProvider]:
        """One tool provider per server that is ready now."""
        with self._lock:
            return [McpToolProvider(self, s) for s in self._servers.values() if s.state == "ready"]

    def call_tool(
        self, server: _Server, name: str, arguments: dict[str, Any], cancel: threading.Event, timeout: float
    ) -> ToolResult:
        """Run a tool of ``server`` (its ``server__tool`` name); an error result, never an exception."""
        label = server.config.name
        tool = server.tools.get(name)
        if tool is None:
            return ToolResult(f"MCP server {label} has no tool {name!r}.", error=True)
        session, loop = server.session, self._loop
        if server.state != "ready" or session is None or loop is None:
            return ToolResult(f"MCP server {label} is {server.state}: {server.message}", error=True)
        call = self._call(server, session, tool.name, name, arguments, timeout)
        future = asyncio.run_coroutine_threadsafe(call, loop)
        deadline = time.monotonic() + timeout + 5.0  # the session's own timeout answers first
        while True:
            try:
                return future.result(0.1)
            except concurrent.futures.TimeoutError:
                if cancel.is_set():
                    future.cancel()
                    return ToolResult(f"{name} was stopped.", error=True)
                if time.monotonic() >= deadline:
                    future.cancel()
                    return ToolResult(f"{name} did not answer within {timeout:g} s.", error=True)
            except concurrent.futures.CancelledError:
                return ToolResult(f"MCP server {label} stopped during the call.", error=True)
            except Exception as exc:  # never an exception out of a tool call
                return ToolResult(f"{name} failed: {_describe(exc)}", error=True)

    # -- on the loop thread ----------------------------------------------------------------------

    def _ensure_loop(self) -> None:
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._spawn_lock = asyncio.Lock()
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                for task in asyncio.all_tasks(loop):
                    task.cancel()
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="mcp-clients", daemon=True)
        self._thread.start()
        ready.wait(5.0)
        self._loop = loop
        atexit.register(self.stop)

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _launch(self, name: str, entry: ServerConfig | str) -> None:
        if isinstance(entry, str):
            server = _Server(ServerConfig(name), state="failed", message=entry)
        elif entry.disabled:
            server = _Server(entry, state="stopped", message="disabled in mcp.json")
        else:
            server = _Server(entry)
            self._submit(self._begin(server)).result(5.0)
        self._servers[name] = server

    async def _begin(self, server: _Server) -> None:
        server.task = asyncio.get_running_loop().create_task(self._serve(server), name=f"mcp-{server.config.name}")

    def _end(self, name: str, wait: bool = True) -> None:
        """Cancel a server's session task (its transport then ends the process); ``wait`` for it."""
        server = self._servers[name]
        task = server.task
        if task is None or task.done():
            return
        self._submit(_cancel(task)).result(5.0)
        if wait:
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                self._submit(_gather_quietly([task])).result(STOP_TIMEOUT)
        else:
            self._tasks_ending.append(task)

    async def _open(self, server: _Server, stack: AsyncExitStack) -> Any:
        """The transport's stream pair (a stdio server is started here)."""
        config = server.config
        if config.url is not None:
            client = create_mcp_http_client(headers=dict(config.headers) or None)
            await stack.enter_async_context(client)
            return await stack.enter_async_context(streamable_http_client(config.url, http_client=client))
        assert config.command is not None and self._spawn_lock is not None
        params = StdioServerParameters(command=config.command, args=list(config.args), env=dict(config.env) or None)
        if config.cwd:
            params.cwd = config.cwd
        server.stderr = tail = _StderrTail(config.name)
        async with self._spawn_lock:  # one spawn at a time: the new child process is this server's
            before = _children()
            try:
                streams = await stack.enter_async_context(stdio_client(params, errlog=tail.writer))
            finally:
                tail.close_writer()
            new = _children() - before
        server.pid = new.pop() if len(new) == 1 else None
        return streams

    async def _serve(self, server: _Server) -> None:
        """Connect, list the tools, then hold the session until the server goes away or we stop."""
        name = server.config.name
        try:
            async with AsyncExitStack() as stack:
                read, write = await self._open(server, stack)
                relay_in, relay_out = anyio.create_memory_object_stream[SessionMessage | Exception](0)
                group = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(group.cancel_scope.cancel)
                server.watch = anyio.CancelScope()
                group.start_soon(self._relay, server, read, relay_in)
                session = await stack.enter_async_context(ClientSession(relay_out, write, client_info=_CLIENT_INFO))
                with server.watch:
                    with anyio.fail_after(self.connect_timeout):
                        await session.initialize()
                        tools = await _list_tools(session)
                    server.tools = {tool_name(name, tool.name): tool for tool in tools}
                    server.session, server.state = session, "ready"
                    server.message = f"{len(tools)} tool{'s' if len(tools) != 1 else ''}"
                    log.info("MCP server %s is ready with %d tools", name, len(tools))
                    await anyio.sleep_forever()
                # Only lost() ends the watch: the server went away (the relay or a failed ping saw it).
                server.session = None
        except asyncio.CancelledError:
            server.session, server.state, server.message = None, "stopped", "stopped"
            server.pid = None
            raise
        except Exception as exc:
            server.session, server.state = None, "failed"
            if isinstance(exc, TimeoutError):
                server.message = f"did not finish connecting within {self.connect_timeout:g} s"
            elif isinstance(exc, FileNotFoundError) and server.config.command:
                server.message = f"command not found: {server.config.command}"
            elif server.config.url is not None:
                server.message = server.problem or f"{server.config.url}: {_describe(exc)}"
            else:
                server.message = server.problem or _describe(exc)
        server.pid = None
        await self._add_stderr(server)
        log.warning("MCP server %s failed: %s", name, server.message)

    async def _relay(
        self, server: _Server, read: Any, send: anyio.abc.ObjectSendStream[SessionMessage | Exception]
    ) -> None:
        """Pass the server's messages to the session; note when it stops talking JSON-RPC or leaves."""
        problem = "the connection closed"
        try:
            async with send:
                async for item in read:
                    if isinstance(item, Exception):
                        problem = _not_json_rpc(item, stdio=server.config.command is not None)
                        break
                    await send.send(item)
                else:
                    if server.config.command:
                        problem = "the server exited"
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
            pass
        # Not reached when we stop it (cancelled): that is not a failure.
        server.lost(problem)

    async def _add_stderr(self, server: _Server) -> None:
        """Add the server's last stderr line to its status (already "failed": callers stop at once).

        The line is read on the tail's thread; a busy machine can take a few seconds to get to it."""
        tail = server.stderr
        if tail is None:
            return
        await asyncio.get_running_loop().run_in_executor(None, tail.ended.wait, 5.0)
        if last := tail.last():
            server.message = f"{server.message}: {last}"

    async def _call(
        self,
        server: _Server,
        session: ClientSession,
        tool: str,
        name: str,
        arguments: dict[str, Any],
        timeout: float,
    ) -> ToolResult:
        try:
            result = await session.call_tool(tool, arguments, read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.error.code == mcp_types.REQUEST_TIMEOUT:
                return ToolResult(f"{name} did not answer within {timeout:g} s.", error=True)
            await self._check_alive(server, session)
            return ToolResult(f"MCP server {server.config.name}: {_describe(exc)}", error=True)
        except Exception as exc:
            await self._check_alive(server, session)
            return ToolResult(f"MCP server {server.config.name}: {_describe(exc)}", error=True)
        return result_text(result, self.max_result_chars)

    async def _check_alive(self, server: _Server, session: ClientSession) -> None:
        """After a failed call: a server that no longer answers a ping is failed (an HTTP server that
        went away is only noticed like this)."""
        if server.state != "ready":
            return
        try:
            with anyio.fail_after(5.0):
                await session.send_ping()
        except Exception as exc:
            server.lost(f"stopped answering ({_describe(exc)})")


def _not_json_rpc(exc: Exception, stdio: bool) -> str:
    """What a server sent that is not JSON-RPC, briefly."""
    if isinstance(exc, ValidationError) and exc.errors():
        got = exc.errors()[0].get("input")
        detail = f"{_one_line(got, 80)!r}" if isinstance(got, str) else _one_line(exc.errors()[0]["msg"], 120)
    else:
        detail = _describe(exc)
    if stdio:
        return f"printed something that is not JSON-RPC on stdout (a stdio server may write only MCP messages there): {detail}"
    return f"sent something that is not JSON-RPC: {detail}"


async def _list_tools(session: ClientSession) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a paginator that never ends cannot hang the start
        page = await session.list_tools(params=mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()


async def _gather_quietly(tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)
