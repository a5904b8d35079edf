"""MCP servers as tool providers, against real servers written with the SDK (tests/mcp_servers/):
over stdio and over Streamable HTTP, plus the ones that go wrong - a command that does not exist,
a server that dies after its first call, one that prints garbage instead of JSON-RPC, a tool that
runs past its timeout, a result of megabytes. Every wait is bounded."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mcp.types as mcp_types
import psutil
import pytest

from server_process import free_port  # tests/: pytest.ini pythonpath
from webui.errors import SettingsError
from webui.tools.mcp import McpServers, McpToolProvider, ServerStatus, parse_config, result_text, tool_name

SERVERS = Path(__file__).resolve().parent.parent / "mcp_servers"
CALC = str(SERVERS / "calc_server.py")


def stdio(script: str) -> dict:
    return {"command": sys.executable, "args": [str(SERVERS / script)]}


def status_of(servers: McpServers, name: str) -> ServerStatus:
    return next(s for s in servers.status() if s.name == name)


def provider(servers: McpServers, name: str) -> McpToolProvider:
    found = [p for p in servers.providers() if p.name == name]
    assert found, f"{name} is not ready: {status_of(servers, name)}"
    return found[0]


def wait_until(check, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    """The calc server over Streamable HTTP on a free port, in its own process."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, CALC, "--http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def listening() -> bool:
        assert process.poll() is None, f"the HTTP MCP server exited with code {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            return False

    try:
        assert wait_until(listening, 60), "the HTTP MCP server did not listen within 60 s"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[McpServers]:
    """One manager with every kind of server at once: the broken ones must not stop the good ones."""
    path = tmp_path_factory.mktemp("mcp") / "mcp.json"
    config = {
        "calc": stdio("calc_server.py"),
        "web": {"url": http_server},
        "missing": {"command": "no-such-mcp-server-command-xyz", "args": []},
        "dying": stdio("dying_server.py"),
        "garbage": stdio("garbage_server.py"),
    }
    path.write_text(json.dumps({"mcpServers": config}))
    manager = McpServers(path, connect_timeout=60)
    manager.start()
    try:
        assert manager.wait_connected(90), manager.status()
        yield manager
    finally:
        manager.stop()


# -- real servers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, transport", [("calc", "stdio"), ("web", "http")])
def test_lists_and_calls_tools(servers: McpServers, name: str, transport: str) -> None:
    status = status_of(servers, name)
    assert (status.state, status.transport, status.tools) == ("ready", transport, 5), status
    tools = {info.name: info for info in provider(servers, name).tools()}
    add, shout = tools[f"{name}__add"], tools[f"{name}__shout"]
    assert add.source == f"mcp: {name}" and add.description == "Add two integers."
    assert add.read_only and not shout.read_only  # from the tools' readOnlyHint annotation
    assert add.spec is not None and add.spec.name == f"{name}__add"
    assert add.spec.parameters["properties"].keys() == {"a", "b"}
    assert add.error is None

    calls = provider(servers, name)
    never = threading.Event()
    result = calls.call(f"{name}__add", {"a": 2, "b": 40}, never, 30)
    assert (result.text, result.error) == ("42", False)
    assert calls.call(f"{name}__shout", {"text": "quiet please"}, never, 30).text == "QUIET PLEASE"


@pytest.mark.parametrize("name", ["calc", "web"])
def test_a_tool_past_its_timeout_is_an_error_result(servers: McpServers, name: str) -> None:
    result = provider(servers, name).call(f"{name}__slow", {"seconds": 30}, threading.Event(), 1.0)
    assert result.error and "did not answer within 1 s" in result.text
    # the session goes on
    assert provider(servers, name).call(f"{name}__add", {"a": 1, "b": 1}, threading.Event(), 30).text == "2"


def test_cancel_abandons_the_call(servers: McpServers) -> None:
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    result = provider(servers, "web").call("web__slow", {"seconds": 30}, cancel, 60)
    assert result.error and "stopped" in result.text


def test_a_tool_error_and_a_flood_are_bounded_results(servers: McpServers) -> None:
    calc = provider(servers, "calc")
    failed = calc.call("calc__fail", {"reason": "no such thing"}, threading.Event(), 30)
    assert failed.error  # isError from the server
    flood = calc.call("calc__flood", {"size": 3_000_000}, threading.Event(), 60)
    assert not flood.error and flood.truncated
    assert len(flood.text) < servers.max_result_chars + 200 and "cut at" in flood.text
    unknown = calc.call("calc__nope", {}, threading.Event(), 5)
    assert unknown.error and "no tool" in unknown.text


def test_a_command_that_does_not_exist_fails_alone(servers: McpServers) -> None:
    status = status_of(servers, "missing")
    assert status.state == "failed"
    assert "command not found: no-such-mcp-server-command-xyz" in status.message
    assert "missing" not in [p.name for p in servers.providers()]
    assert status_of(servers, "calc").state == "ready"


def test_garbage_on_stdout_fails_the_server(servers: McpServers) -> None:
    status = status_of(servers, "garbage")
    assert status.state == "failed"
    assert "not JSON-RPC" in status.message and "Welcome to the garbage server" in status.message


def test_a_dying_server_fails_and_its_calls_are_errors(servers: McpServers) -> None:
    dying = provider(servers, "dying")
    first = dying.call("dying__hello", {"name": "you"}, threading.Event(), 30)
    assert (first.text, first.error) == ("hello you", False)
    assert wait_until(lambda: status_of(servers, "dying").state == "failed"), status_of(servers, "dying")
    # "failed" at once; its last stderr line follows once the tail's thread has read it
    assert wait_until(lambda: "dying after the first call" in status_of(servers, "dying").message), status_of(
        servers, "dying"
    )
    status = status_of(servers, "dying")
    assert "exited" in status.message and status.state == "failed"
    assert "dying" not in [p.name for p in servers.providers()]
    again = dying.call("dying__hello", {"name": "you"}, threading.Event(), 30)
    assert again.error and "failed" in again.text
    # its tools still list, marked unusable
    assert all(info.spec is None and info.error for info in dying.tools())
    assert provider(servers, "calc").call("calc__add", {"a": 1, "b": 2}, threading.Event(), 30).text == "3"


def test_a_server_that_goes_away_over_http(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, CALC, "--http", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"web": {"url": f"http://127.0.0.1:{port}/mcp"}}}))
    manager = McpServers(path, connect_timeout=30)
    try:

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return True
            except OSError:
                return False

        assert wait_until(up, 60)
        manager.start()
        assert manager.wait_connected(60) and status_of(manager, "web").state == "ready"
        web = provider(manager, "web")
        process.terminate()
        process.wait(10)
        result = web.call("web__add", {"a": 1, "b": 2}, threading.Event(), 10)
        assert result.error
        assert status_of(manager, "web").state == "failed" and manager.providers() == []
    finally:
        manager.stop()
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_stop_ends_the_server_processes(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"one": stdio("calc_server.py"), "two": stdio("calc_server.py")}}))
    manager = McpServers(path, connect_timeout=60)
    manager.start()
    try:
        assert manager.wait_connected(90)
        pids = [s.pid for s in manager.status()]
        assert all(pids) and all(psutil.pid_exists(pid) for pid in pids if pid), manager.status()
        one = provider(manager, "one")
    finally:
        manager.stop()

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    assert all(gone(pid) for pid in pids if pid)
    assert [s.state for s in manager.status()] == ["stopped", "stopped"]
    assert manager.providers() == []
    late = one.call("one__add", {"a": 1, "b": 2}, threading.Event(), 5)
    assert late.error


def test_reload_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"calc": stdio("calc_server.py")}}))
    manager = McpServers(path, connect_timeout=60)
    manager.start()
    try:
        assert manager.wait_connected(90)
        pid = status_of(manager, "calc").pid
        manager.save_text(
            json.dumps({"mcpServers": {"calc": stdio("calc_server.py"), "gone": {"command": "nope-xyz"}}})
        )
        manager.reload()
        assert manager.wait_connected(30)
        assert status_of(manager, "calc").pid == pid  # unchanged: the same session goes on
        assert status_of(manager, "gone").state == "failed"
        manager.restart("calc")
        assert manager.wait_connected(90)
        assert status_of(manager, "calc").state == "ready" and status_of(manager, "calc").pid != pid
        assert wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", 10)
        with pytest.raises(SettingsError):
            manager.restart("nobody")
    finally:
        manager.stop()


# -- the file, names and results (no server) ---------------------------------------------------------


def test_a_malformed_file_is_a_status_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text("{ this is not json")
    manager = McpServers(path)
    manager.start()
    try:
        assert manager.config_error and "not valid JSON" in manager.config_error
        assert manager.status() == [] and manager.providers() == []
    finally:
        manager.stop()


def test_save_text_checks_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    manager = McpServers(path)
    assert json.loads(manager.load_text()) == {"mcpServers": {}}  # no file yet: an empty config to edit
    good = json.dumps({"mcpServers": {"a": {"command": "x", "args": ["1"], "env": {"K": "v"}}}})
    manager.save_text(good)
    assert json.loads(path.read_text()) == json.loads(good)
    for bad, says in [
        ("[1, 2", "not valid JSON"),
        ('{"servers": {}}', "mcpServers"),
        ('{"mcpServers": {"a": {"command": "x", "url": "http://h"}}}', "either a command"),
        ('{"mcpServers": {"a": {"command": "x", "args": "-v"}}}', "args must be a list"),
        ('{"mcpServers": {"a": {"url": "ftp://h"}}}', "http:// or https://"),
        ('{"mcpServers": {"a": {"url": "http://h", "type": "sse"}}}', "SSE"),
        ('{"mcpServers": {"a": {"command": "x", "autoStart": true}}}', "unknown key 'autoStart'"),
    ]:
        with pytest.raises(SettingsError, match=says):
            manager.save_text(bad)
        assert json.loads(path.read_text()) == json.loads(good)  # left as it was


def test_parse_config_keeps_good_servers_next_to_bad_ones() -> None:
    parsed = parse_config(
        json.dumps(
            {
                "mcpServers": {
                    "fs": {"command": "npx", "args": ["-y", "server"], "env": {"A": "1"}},
                    "web": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer t"}, "type": "http"},
                    "off": {"command": "x", "disabled": True},
                    "broken": {"env": {}},
                }
            }
        )
    )
    assert parsed["fs"].transport == "stdio" and parsed["fs"].args == ("-y", "server")  # type: ignore[union-attr]
    assert parsed["web"].headers == (("Authorization", "Bearer t"),)  # type: ignore[union-attr]
    assert parsed["off"].disabled  # type: ignore[union-attr]
    assert isinstance(parsed["broken"], str) and "command" in parsed["broken"]


def test_tool_names_are_sanitised_and_bounded() -> None:
    assert tool_name("my server", "read.file") == "my_server__read_file"
    long_a, long_b = tool_name("s" * 40, "t" * 40 + "a"), tool_name("s" * 40, "t" * 40 + "b")
    assert len(long_a) == 64 and long_a != long_b
    assert all(c.isalnum() or c in "_-" for c in tool_name("ünï cödé", "tööl/1"))


def test_result_text_names_what_it_leaves_out() -> None:
    result = mcp_types.CallToolResult(
        content=[
            mcp_types.TextContent(type="text", text="first"),
            mcp_types.ImageContent(type="image", data="aGk=", mime_type="image/png"),
            mcp_types.TextContent(type="text", text="second"),
        ],
        is_error=True,
    )
    converted = result_text(result)
    assert converted.text == "first\n[image omitted]\nsecond" and converted.error
    cut = result_text(mcp_types.CallToolResult(content=[mcp_types.TextContent(type="text", text="y" * 50)]), limit=10)
    assert cut.truncated and cut.text.startswith("y" * 10 + "\n") and "cut at 10" in cut.text
