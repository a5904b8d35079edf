"""The ToolBox: one name space over the providers, arguments checked against the schema, results
bounded, timeouts and failures as error results - never an exception."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from webui.agents.types import ToolSpec
from webui.tools.files import FileTools, ToolContext
from webui.tools.toolbox import ToolBox
from webui.tools.types import ToolInfo, ToolResult


class Server:
    """A provider standing in for an MCP server: fixed tools, calls recorded."""

    def __init__(self, name: str, tools: list[ToolInfo], reply: str = "ok", fail: Exception | None = None) -> None:
        self.source = f"mcp: {name}"
        self._tools = tools
        self.reply = reply
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any], float]] = []
        self.reloads = 0

    def tools(self) -> list[ToolInfo]:
        if self.fail and not self.calls and self.reply == "tools fail":
            raise self.fail
        return self._tools

    def call(self, name: str, arguments: dict[str, Any], cancel: threading.Event, timeout: float) -> ToolResult:
        self.calls.append((name, arguments, timeout))
        if self.fail:
            raise self.fail
        return ToolResult(self.reply)

    def reload(self) -> None:
        self.reloads += 1


def tool(name: str, source: str = "mcp: s", **properties: Any) -> ToolInfo:
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return ToolInfo(name, source, f"The {name} tool.", spec=ToolSpec(name, f"The {name} tool.", schema))


@pytest.fixture
def files(tmp_path: Path) -> FileTools:
    (tmp_path / "echo.py").write_text(
        textwrap.dedent(
            '''
            import time

            def echo(text: str, times: int = 1, pause: float = 0) -> str:
                """Repeat text."""
                time.sleep(pause)
                return text * times
            '''
        ),
        encoding="utf-8",
    )
    (tmp_path / "broken.py").write_text("raise ImportError('missing dependency')\n", encoding="utf-8")
    return FileTools(tmp_path, ToolContext())


def run(box: ToolBox, name: str, arguments: str) -> ToolResult:
    return box.run(name, arguments, threading.Event())


def test_listing_info_and_specs(files: FileTools) -> None:
    server = Server("s", [tool("lookup", word={"type": "string"})])
    box = ToolBox([files, server], timeout=5, max_result_chars=100)
    assert [(i.name, i.source, i.error is None) for i in box.listing()] == [
        ("broken", "broken.py", False),
        ("echo", "echo.py", True),
        ("lookup", "mcp: s", True),
    ]
    echo = box.info("echo")
    assert echo is not None and echo.spec is not None
    assert box.info("nothing") is None
    assert [s.name for s in box.specs(["lookup", "echo", "broken", "nothing"])] == ["echo", "lookup"]
    assert box.specs([]) == []


def test_calls_reach_their_provider(files: FileTools) -> None:
    server = Server("s", [tool("lookup", word={"type": "string"})], reply="found")
    box = ToolBox([files, server], timeout=5, max_result_chars=100)
    assert run(box, "echo", '{"text": "ab", "times": 2}') == ToolResult("abab")
    assert run(box, "lookup", '{"word": "x"}') == ToolResult("found")
    assert server.calls == [("lookup", {"word": "x"}, 5)]


def test_duplicate_names_the_later_one_gets_an_error(files: FileTools) -> None:
    server = Server("s", [tool("echo", text={"type": "string"})], reply="from the server")
    box = ToolBox([files, server], timeout=5, max_result_chars=100)
    first, later = [i for i in box.listing() if i.name == "echo"]
    assert first.source == "echo.py" and first.error is None
    assert later.source == "mcp: s" and later.spec is None
    assert later.error == "Another tool named 'echo' comes first (echo.py); this one is not used."
    assert box.info("echo") == first
    assert [s.name for s in box.specs(["echo"])] == ["echo"]
    assert run(box, "echo", '{"text": "a"}') == ToolResult("a")
    assert server.calls == []


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("nothing", "{}", "There is no tool named 'nothing'. The tools are: echo, lookup."),
        ("broken", "{}", "The tool broken cannot be used: broken.py: importing it failed"),
        ("echo", '{"text": ', "The arguments of echo are not valid JSON (Expecting value)"),
        ("echo", "[1, 2]", "The arguments of echo must be a JSON object, not list."),
        ("echo", "[" * 100_000, "The arguments of echo are not valid JSON"),
        (
            "echo",
            "{}",
            "The arguments of echo do not match its schema:\n- the top level: 'text' is a required property",
        ),
        (
            "echo",
            '{"text": 1, "times": "x"}',
            "- text: 1 is not of type 'string'\n- times: 'x' is not of type 'integer'",
        ),
        ("echo", '{"text": "a", "more": 1}', "Additional properties are not allowed ('more' was unexpected)"),
        ("lookup", "", "'word' is a required property"),
    ],
)
def test_bad_calls_are_error_results(files: FileTools, name: str, arguments: str, message: str) -> None:
    server = Server("s", [tool("lookup", word={"type": "string"})])
    box = ToolBox([files, server], timeout=5, max_result_chars=1000)
    result = run(box, name, arguments)
    assert result.error
    assert message in result.text
    assert server.calls == []


def test_long_results_are_truncated_with_a_notice(files: FileTools) -> None:
    box = ToolBox([files], timeout=5, max_result_chars=10)
    result = run(box, "echo", '{"text": "abc", "times": 10}')
    assert result == ToolResult("abcabcabca\n[... truncated: 20 more characters]", truncated=True)
    assert run(box, "echo", '{"text": "abcde", "times": 2}') == ToolResult("abcdeabcde")
    box.max_result_chars = 4
    failed = run(box, "nothing", "{}")  # error texts are bounded too
    assert failed.error and failed.truncated and failed.text.startswith("Ther\n[... truncated: ")


def test_timeout_and_stop(files: FileTools) -> None:
    box = ToolBox([files], timeout=0.2, max_result_chars=1000)
    result = run(box, "echo", '{"text": "a", "pause": 3}')
    assert result.error and "did not finish within 0.2 seconds" in result.text
    box.timeout = 10
    cancel = threading.Event()
    timer = threading.Timer(0.2, cancel.set)
    timer.start()
    result = box.run("echo", '{"text": "a", "pause": 3}', cancel)
    timer.join()
    assert result.error and "stopped by the user" in result.text
    assert box.run("echo", '{"text": "a"}', cancel) == ToolResult("The tool echo was stopped by the user.", error=True)


def test_provider_failures_never_raise() -> None:
    raising = Server("bad", [tool("crash")], fail=RuntimeError("connection lost"))
    box = ToolBox([raising], timeout=5, max_result_chars=1000)
    assert run(box, "crash", "{}") == ToolResult("The tool crash failed: RuntimeError: connection lost", error=True)
    dead = Server("dead", [], reply="tools fail", fail=ConnectionError("server died"))
    box.add_provider(dead)
    listed = box.listing()
    assert listed[-1].source == "mcp: dead" and listed[-1].error == "Its tools cannot be listed: server died"
    assert run(box, "crash", "{}").error


def test_add_remove_and_reload_providers(files: FileTools, tmp_path: Path) -> None:
    server = Server("s", [tool("lookup")])
    box = ToolBox([files], timeout=5, max_result_chars=100)
    box.add_provider(server)
    box.add_provider(server)
    assert [i.name for i in box.listing()] == ["broken", "echo", "lookup"]
    box.remove_provider(server)
    box.remove_provider(server)
    assert box.info("lookup") is None
    (tmp_path / "later.py").write_text(
        'def later() -> str:\n    """Added later."""\n    return "hi"\n', encoding="utf-8"
    )
    box.add_provider(server)
    box.reload()
    assert server.reloads == 1
    assert run(box, "later", "{}") == ToolResult("hi")
