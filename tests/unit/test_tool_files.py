"""Tool files: schemas derived from signatures and docstrings, broken files listed with their error,
calls checked, bounded and converted to text, and the shipped tools."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import pytest

from webui.settings import PROJECT_DIR
from webui.structured.schema import check_schema
from webui.tools.files import FileTools, ToolContext, describe_function, result_text

SHIPPED = PROJECT_DIR / "tools"


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def call(tools: FileTools, name: str, timeout: float = 10.0, **arguments: object) -> tuple[str, bool]:
    result = tools.call(name, arguments, threading.Event(), timeout)
    return result.text, result.error


GOOD = '''
    from typing import Literal, Optional

    READ_ONLY = True


    def weather(city: str, days: int = 3, unit: Literal["C", "F"] = "C", note: Optional[str] = None) -> dict:
        """Get the weather forecast.

        Looks the city up in a made-up table.

        Args:
            city: The city's name.
            days: How many days ahead.
            unit: Celsius or Fahrenheit.
        """
        return {"city": city, "days": days, "unit": unit, "note": note}
'''


def test_schema_from_signature_and_docstring(tmp_path: Path) -> None:
    write(tmp_path, "weather", GOOD)
    [info] = FileTools(tmp_path, ToolContext()).tools()
    assert (info.name, info.source, info.read_only, info.error) == ("weather", "weather.py", True, None)
    assert info.spec is not None
    assert (
        info.description
        == info.spec.description
        == "Get the weather forecast.\n\nLooks the city up in a made-up table."
    )
    assert info.spec.parameters == {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "city": {"type": "string", "description": "The city's name."},
            "days": {"type": "integer", "default": 3, "description": "How many days ahead."},
            "unit": {"type": "string", "enum": ["C", "F"], "default": "C", "description": "Celsius or Fahrenheit."},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["city"],
    }
    # the app turns tool schemas into grammars: these must be ones it can enforce
    check_schema(info.spec.parameters, "weather", strict=True)


def test_numpy_and_rest_docstrings_and_nested_types() -> None:
    def numpy_style(values: list[float], scale: float = 1.0) -> float:
        """Sum scaled values.

        Parameters
        ----------
        values
            The numbers.
        scale
            A factor.
        """
        return sum(values) * scale

    def rest_style(flag: bool, tags: dict[str, int] | None = None) -> str:
        """Do a thing.

        :param flag: Whether to.
        :param tags: Counts by tag.
        """
        return ""

    numpy = describe_function(numpy_style, "numpy_style").spec
    assert numpy.description == "Sum scaled values."
    assert numpy.parameters["properties"]["values"] == {
        "type": "array",
        "items": {"type": "number"},
        "description": "The numbers.",
    }
    assert numpy.parameters["properties"]["scale"]["description"] == "A factor."
    rest = describe_function(rest_style, "rest_style").spec
    assert rest.parameters["properties"]["flag"] == {"type": "boolean", "description": "Whether to."}
    assert rest.parameters["properties"]["tags"]["anyOf"][0] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }
    assert rest.parameters["required"] == ["flag"]


def test_context_parameter_is_injected_and_not_in_the_schema(tmp_path: Path) -> None:
    write(
        tmp_path,
        "where",
        '''
        from webui.tools.files import ToolContext

        def where(context: ToolContext, suffix: str = "") -> str:
            """Say which folder is allowed."""
            return f"{context.allowed_folder}{suffix}"
        ''',
    )
    tools = FileTools(tmp_path, ToolContext(allowed_folder=Path("/data")))
    [info] = tools.tools()
    assert info.spec is not None and list(info.spec.parameters["properties"]) == ["suffix"]
    assert call(tools, "where", suffix="!") == ("/data!", False)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def bad(:\n    pass\n", "bad.py: syntax error on line 1"),
        ("raise RuntimeError('no network')\n", "bad.py: importing it failed (line 1): RuntimeError: no network"),
        ("import sys\nsys.exit(3)\n", "bad.py: it calls sys.exit(3) while importing"),
        ("raise SystemExit\n", "bad.py: it calls sys.exit(None) while importing"),
        ("raise KeyboardInterrupt\n", "bad.py: importing it failed (line 1): KeyboardInterrupt"),
        ("import no_such_module_here\n", "ModuleNotFoundError: No module named 'no_such_module_here'"),
        ("def other(x: int) -> int:\n    return x\n", "bad.py: it defines no function bad()"),
        ("bad = 42\n", "it defines no function bad()"),
        ("def bad(*args: int) -> int:\n    return 0\n", "bad(): *args is not supported"),
        ("def bad(**kw: int) -> int:\n    return 0\n", "bad(): **kw is not supported"),
        ("def bad(x) -> int:\n    return 0\n", "bad(): parameter 'x' has no type hint"),
        ("def bad(x: int, /) -> int:\n    return 0\n", "parameter 'x' is positional-only"),
        ("def bad(x: 'Missing') -> int:\n    return 0\n", "type hints cannot be resolved: NameError"),
        ("class Thing: pass\ndef bad(x: Thing) -> int:\n    return 0\n", "cannot be described as a JSON schema"),
    ],
)
def test_broken_files_are_listed_with_their_error_and_others_work(tmp_path: Path, source: str, problem: str) -> None:
    write(tmp_path, "weather", GOOD)
    (tmp_path / "bad.py").write_text(source, encoding="utf-8")
    tools = FileTools(tmp_path, ToolContext())
    bad, good = tools.tools()
    assert (bad.name, bad.source, bad.spec) == ("bad", "bad.py", None)
    assert bad.error is not None and problem in bad.error
    assert good.error is None
    assert call(tools, "weather", city="Oslo") == ('{"city": "Oslo", "days": 3, "unit": "C", "note": null}', False)
    text, error = call(tools, "bad")
    assert error and "cannot be used" in text


def test_a_file_that_hangs_on_import(tmp_path: Path) -> None:
    write(tmp_path, "stuck", "import time\ntime.sleep(3)\n")
    [info] = FileTools(tmp_path, ToolContext(), import_timeout=0.2).tools()
    assert info.error == "stuck.py: importing it did not finish within 0.2 seconds"


def test_helpers_and_odd_names_are_not_tools(tmp_path: Path) -> None:
    write(tmp_path, "_helpers", "X = 1\n")
    write(tmp_path, "my-tool", "def f() -> int:\n    return 1\n")
    [info] = FileTools(tmp_path, ToolContext()).tools()
    assert info.name == "my-tool" and info.error is not None and "must be a Python name" in info.error
    assert FileTools(tmp_path / "missing", ToolContext()).tools() == []


def test_reload_picks_up_new_changed_and_removed_files(tmp_path: Path) -> None:
    write(tmp_path, "one", 'def one() -> str:\n    """First."""\n    return "1"\n')
    tools = FileTools(tmp_path, ToolContext())
    assert [i.name for i in tools.tools()] == ["one"]
    write(tmp_path, "two", 'def two() -> str:\n    """Second."""\n    return "2"\n')
    assert [i.name for i in tools.tools()] == ["one"]  # read again only on reload()
    write(tmp_path, "one", 'def one() -> str:\n    """First, changed."""\n    return "1!"\n')
    tools.reload()
    assert [(i.name, i.description) for i in tools.tools()] == [("one", "First, changed."), ("two", "Second.")]
    assert call(tools, "one") == ("1!", False)
    (tmp_path / "two.py").unlink()
    tools.reload()
    assert [i.name for i in tools.tools()] == ["one"]
    assert call(tools, "two")[1]


def test_calls_check_arguments_convert_results_and_report_failures(tmp_path: Path) -> None:
    write(
        tmp_path,
        "act",
        '''
        import sys
        import time

        def act(mode: str, n: int = 1) -> object:
            """Do what mode says."""
            if mode == "raise":
                raise ValueError("n is wrong")
            if mode == "exit":
                sys.exit(1)
            if mode == "sleep":
                time.sleep(n)
            if mode == "none":
                return None
            if mode == "object":
                return object()
            return [mode] * n
        ''',
    )
    tools = FileTools(tmp_path, ToolContext())
    assert call(tools, "act", mode="x", n=2) == ('["x", "x"]', False)
    assert call(tools, "act", mode="x", n="2") == ('["x", "x"]', False)  # pydantic's usual coercion
    assert call(tools, "act", mode="none") == ("null", False)
    text, error = call(tools, "act", mode="x", n="many")
    assert error and text.startswith("The arguments of act are not valid: n:")
    text, error = call(tools, "act", mode="x", extra=1)
    assert error and "extra: Extra inputs are not permitted" in text
    assert call(tools, "act", mode="raise") == ("The tool act failed: ValueError: n is wrong", True)
    assert call(tools, "act", mode="exit") == ("The tool act failed: SystemExit: it called sys.exit(1)", True)
    text, error = call(tools, "act", mode="object")
    assert error and "it returned object, which is neither text nor JSON" in text
    text, error = call(tools, "act", timeout=0.2, mode="sleep", n=2)
    assert error and "did not finish within 0.2 seconds" in text
    cancel = threading.Event()
    cancel.set()
    result = tools.call("act", {"mode": "sleep", "n": 2}, cancel, 10)
    assert result.error and "stopped by the user" in result.text
    assert call(tools, "nothing")[1]


def test_result_text() -> None:
    assert result_text("as is") == "as is"
    assert result_text({"a": [1, 2.5, None], "b": "é"}) == '{"a": [1, 2.5, null], "b": "é"}'
    assert result_text(Path("x")) == '"x"'


# ---- the shipped tools ---------------------------------------------------------------------


@pytest.fixture
def shipped(tmp_path: Path) -> FileTools:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("the answer is 42\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("password", encoding="utf-8")

    def search_chats(query: str, limit: int) -> list[dict[str, object]]:
        return [{"chat": "Trip", "snippet": f"... {query} ..."}] if query == "Oslo" else []

    return FileTools(SHIPPED, ToolContext(allowed_folder=shared, search_chats=search_chats))


def test_shipped_tools_are_listed_usable_and_enforceable(shipped: FileTools) -> None:
    infos = shipped.tools()
    assert [i.name for i in infos] == ["calculate", "current_time", "list_files", "read_file", "search_chats"]
    for info in infos:
        assert info.error is None and info.spec is not None and info.description, info
        assert info.read_only
        check_schema(info.spec.parameters, info.name, strict=True)


def test_shipped_tools_work(shipped: FileTools) -> None:
    assert call(shipped, "calculate", expression="(3 + 4) * 12 / 7") == ("12", False)
    text, error = call(shipped, "calculate", expression="9**9**9**9")
    assert error and "too large" in text
    text, error = call(shipped, "current_time")
    assert not error and "time zone" in text
    assert call(shipped, "list_files") == ("notes.txt (17 B)", False)
    assert call(shipped, "read_file", path="notes.txt") == ("the answer is 42\n", False)
    text, error = call(shipped, "read_file", path="../secret.txt")
    assert error and "outside the folder" in text and "password" not in text
    assert call(shipped, "search_chats", query="Oslo") == ('[{"chat": "Trip", "snippet": "... Oslo ..."}]', False)
    assert call(shipped, "search_chats", query="Mars") == ("No chat matches 'Mars'.", False)


def test_shipped_file_tools_without_a_folder_say_how_to_choose_one(tmp_path: Path) -> None:
    tools = FileTools(SHIPPED, ToolContext())
    for name, arguments in (("read_file", {"path": "x.txt"}), ("list_files", {})):
        text, error = call(tools, name, **arguments)
        assert error and "--tools-folder" in text and "tools_folder" in text
    text, error = call(tools, "search_chats", query="x")
    assert error and "not available" in text


def test_models_dataclasses_and_constraints_become_enforceable_schemas(tmp_path: Path) -> None:
    write(
        tmp_path,
        "place",
        '''
        from __future__ import annotations

        from dataclasses import dataclass
        from typing import Annotated

        from pydantic import BaseModel, Field

        @dataclass
        class Point:
            x: float
            y: float

        class Box(BaseModel):
            name: str
            size: int = 1

        def place(p: Point, box: Box, count: Annotated[int, Field(ge=0, le=10)] = 1) -> dict:
            """Place a box at a point."""
            return {"p": p, "box": box, "count": count}
        ''',
    )
    tools = FileTools(tmp_path, ToolContext())
    [info] = tools.tools()
    assert info.spec is not None
    schema = info.spec.parameters
    assert schema["properties"]["count"] == {"type": "integer", "minimum": 0, "maximum": 10, "default": 1}
    assert schema["properties"]["p"] == {"$ref": "#/$defs/Point"}
    check_schema(schema, "place", strict=True)
    text, error = call(tools, "place", p={"x": 1, "y": 2}, box={"name": "b"}, count=3)
    assert (text, error) == ('{"p": {"x": 1.0, "y": 2.0}, "box": {"name": "b", "size": 1}, "count": 3}', False)
    assert call(tools, "place", p={"x": 1, "y": 2}, box={"name": "b"}, count=11)[1]
