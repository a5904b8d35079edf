"""Tool files: ``tools/*.py`` in the user-data folder, one typed, documented Python function per file.

A file ``name.py`` defines ``def name(...)``; its docstring is the tool's description (and, in its
``Args:`` / ``:param`` / numpydoc section, the parameters' descriptions, read by
``docstring-parser``); pydantic makes the JSON schema of the parameters from the type hints and
defaults and checks the arguments of every call. A module-level ``READ_ONLY = True`` marks a tool
that only reads. A parameter annotated :class:`ToolContext` is not shown to the model: it receives
the app's context (the folder the file tools may read, the chat search). Files whose name starts
with ``_`` are helpers, not tools.

Each file is imported on its own, under a unique module name, on a worker thread with a time
limit: a file that does not compile, raises, calls ``sys.exit()`` or hangs while importing becomes
a listed tool with its ``error``; the other files keep working. A call runs on a daemon thread; a
thread cannot be killed, so a call past its timeout (or stopped by the user) returns an error
result at once and the function finishes in the background. A tool file runs with the app's rights.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import re
import sys
import threading
import time
import traceback
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticSerializationError, core_schema, to_jsonable_python

from webui.agents.types import ToolSpec
from webui.tools.confine import MAX_READ_BYTES
from webui.tools.types import ToolInfo, ToolResult

log = logging.getLogger(__name__)

#: ``search_chats(query, limit)``: the user's chats matching ``query``, newest first, as plain dicts.
SearchChats = Callable[[str, int], list[dict[str, Any]]]

#: Seconds a tool file may take to import.
IMPORT_TIMEOUT = 10.0
# OpenAI's rule for function names (a file name is also a Python name, so the stricter rule applies).
_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_module_numbers = itertools.count(1)


@dataclass
class ToolContext:
    """What tools need from the app. A tool function gets it through a parameter annotated ``ToolContext``
    (any name; left out of the schema). The app may change the fields while it runs (the user picks
    another folder): tools read them at each call."""

    #: The one folder ``read_file`` and ``list_files`` may read (the ``tools_folder`` setting); None: none chosen.
    allowed_folder: Path | None = None
    #: The user's chat history search (``services.chat_index``); None: not available.
    search_chats: SearchChats | None = None
    #: Most bytes ``read_file`` reads from one file.
    max_read_bytes: int = MAX_READ_BYTES


Outcome = tuple[Literal["ok", "error", "timeout", "cancelled"], Any]


def run_in_thread(
    work: Callable[[], Any], timeout: float, cancel: threading.Event | None = None, name: str = "tool"
) -> Outcome:
    """Run ``work`` on a daemon thread and wait at most ``timeout`` seconds, or until ``cancel`` is set.

    ``("ok", value)``, ``("error", exception)`` (anything it raised, ``SystemExit`` included),
    ``("timeout", None)`` or ``("cancelled", None)``; in the last two the thread goes on running in
    the background until ``work`` returns (Python cannot stop a thread).
    """
    outcome: list[Outcome] = []
    done = threading.Event()

    def target() -> None:
        try:
            outcome.append(("ok", work()))
        except BaseException as exc:  # noqa: BLE001 - whatever a tool does is reported, never raised here
            outcome.append(("error", exc))
        finally:
            done.set()

    threading.Thread(target=target, name=name, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not done.wait(max(0.0, min(0.05, deadline - time.monotonic()))):
        if cancel is not None and cancel.is_set():
            return ("cancelled", None)
        if time.monotonic() >= deadline:
            return ("timeout", None)
    return outcome[0]


class _NoTitles(GenerateJsonSchema):
    """Pydantic's JSON schema without the ``title`` it derives from each name (noise in the model's prompt)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def model_schema(self, schema: core_schema.ModelSchema) -> dict[str, Any]:
        out = super().model_schema(schema)
        out.pop("title", None)
        return out


@dataclass(frozen=True)
class ToolFunction:
    """What the signature and docstring of a tool function say: its spec, and the model that checks its arguments."""

    spec: ToolSpec
    arguments: type[BaseModel]
    #: Parameters that receive the :class:`ToolContext` (not in the schema).
    context_params: tuple[str, ...] = ()


def describe_function(function: Callable[..., Any], name: str) -> ToolFunction:
    """The tool a typed, documented function makes; ``ValueError`` saying what is unsupported.

    Every parameter needs a type hint and is passed by name (no ``*args``, ``**kwargs`` or
    positional-only parameters); a default makes it optional.
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"its signature cannot be read: {exc}") from None
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception as exc:  # noqa: BLE001 - a hint naming anything at all is evaluated here
        raise ValueError(f"its type hints cannot be resolved: {type(exc).__name__}: {exc}") from None
    doc = docstring_parser.parse(inspect.getdoc(function) or "")
    param_docs = {p.arg_name: (p.description or "").strip() for p in doc.params}
    fields: dict[str, Any] = {}
    context_params = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise ValueError(f"{star}{param.name} is not supported: give every parameter its own name and type")
        if param.kind is param.POSITIONAL_ONLY:
            raise ValueError(f"parameter '{param.name}' is positional-only; tools get their arguments by name")
        if param.name not in hints:
            raise ValueError(f"parameter '{param.name}' has no type hint (every parameter needs one, e.g. 'x: str')")
        hint = hints[param.name]
        if hint is ToolContext:
            context_params.append(param.name)
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hint, Field(default, description=param_docs.get(param.name) or None))
    config = ConfigDict(extra="forbid", protected_namespaces=())
    try:
        model = create_model(f"{name}_arguments", __config__=config, **fields)
        schema = model.model_json_schema(schema_generator=_NoTitles)
    except Exception as exc:  # noqa: BLE001 - pydantic's many ways of saying "cannot make a schema of this"
        raise ValueError(f"its parameters cannot be described as a JSON schema: {exc}") from None
    description = "\n\n".join(part for part in (doc.short_description, doc.long_description) if part)
    return ToolFunction(ToolSpec(name, description.strip(), schema), model, tuple(context_params))


def result_text(value: Any) -> str:
    """What a tool returned, as text for the model: a string as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(to_jsonable_python(value), ensure_ascii=False)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise TypeError(f"it returned {type(value).__name__}, which is neither text nor JSON: {exc}") from None


def describe_error(exc: BaseException) -> str:
    """An exception as one line: its type and message."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: it called sys.exit({exc.code!r})"
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass
class _Loaded:
    info: ToolInfo
    stamp: tuple[int, int]
    function: Callable[..., Any] | None = None
    described: ToolFunction | None = None
    module_name: str | None = None


class FileTools:
    """The tools of the ``*.py`` files in ``folder`` (a :class:`~webui.tools.types.ToolProvider`)."""

    #: How the toolbox names this provider in its messages.
    source = "tool files"

    def __init__(self, folder: Path, context: ToolContext, *, import_timeout: float = IMPORT_TIMEOUT) -> None:
        self.folder = Path(folder)
        self.context = context
        self.import_timeout = import_timeout
        self._lock = threading.Lock()
        self._loaded: dict[Path, _Loaded] | None = None

    def tools(self) -> list[ToolInfo]:
        """Every tool file, sorted by name: usable ones with their spec, broken ones with their error."""
        return [loaded.info for loaded in self._entries().values()]

    def reload(self) -> None:
        """Read the folder again: new and changed files are imported, removed ones dropped."""
        with self._lock:
            self._scan()

    def call(self, name: str, arguments: dict[str, Any], cancel: threading.Event, timeout: float) -> ToolResult:
        loaded = next((e for e in self._entries().values() if e.info.name == name), None)
        if loaded is None:
            return ToolResult(f"There is no tool file for '{name}'.", error=True)
        if loaded.function is None or loaded.described is None:
            return ToolResult(f"The tool {name} cannot be used: {loaded.info.error}", error=True)
        described = loaded.described
        try:
            checked = described.arguments.model_validate(arguments)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            return ToolResult(f"The arguments of {name} are not valid: {problems}", error=True)
        kwargs = {key: getattr(checked, key) for key in type(checked).model_fields}
        kwargs.update(dict.fromkeys(described.context_params, self.context))
        function = loaded.function
        status, value = run_in_thread(lambda: result_text(function(**kwargs)), timeout, cancel, f"tool {name}")
        if status == "ok":
            return ToolResult(value)
        if status == "error":
            return ToolResult(f"The tool {name} failed: {describe_error(value)}", error=True)
        if status == "timeout":
            return ToolResult(
                f"The tool {name} did not finish within {timeout:g} seconds and was abandoned "
                "(it may still finish in the background; its result will not be used).",
                error=True,
            )
        return ToolResult(f"The tool {name} was stopped by the user.", error=True)

    # ---- loading ----------------------------------------------------------------------------

    def _entries(self) -> dict[Path, _Loaded]:
        with self._lock:
            if self._loaded is None:
                self._scan()
            assert self._loaded is not None
            return self._loaded

    def _scan(self) -> None:
        old = self._loaded or {}
        paths = sorted(self.folder.glob("*.py")) if self.folder.is_dir() else []
        new: dict[Path, _Loaded] = {}
        for path in paths:
            if path.name.startswith("_"):
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            previous = old.get(path)
            new[path] = previous if previous is not None and previous.stamp == stamp else self._load(path, stamp)
        for path, previous in old.items():
            if new.get(path) is not previous and previous.module_name:
                sys.modules.pop(previous.module_name, None)
        self._loaded = new

    def _load(self, path: Path, stamp: tuple[int, int]) -> _Loaded:
        name, source = path.stem, path.name

        def broken(problem: str, read_only: bool = False) -> _Loaded:
            log.warning("Tool file %s: %s", path, problem)
            return _Loaded(ToolInfo(name, source, read_only=read_only, error=f"{source}: {problem}"), stamp)

        if not _TOOL_NAME.fullmatch(name):
            return broken("the file name must be a Python name (letters, digits, _; at most 64 characters)")
        module_name = f"_webui_tool_{name}_{next(_module_numbers)}"
        status, value = run_in_thread(
            lambda: _import(path, module_name), self.import_timeout, None, f"import tool {name}"
        )
        if status == "timeout":
            sys.modules.pop(module_name, None)
            return broken(f"importing it did not finish within {self.import_timeout:g} seconds")
        if status != "ok":
            return broken(_import_problem(value, path))
        module = value
        read_only = getattr(module, "READ_ONLY", False) is True
        function = getattr(module, name, None)
        if not callable(function):
            sys.modules.pop(module_name, None)
            return broken(f"it defines no function {name}() (a tool file defines a function named like the file)")
        try:
            described = describe_function(function, name)
        except ValueError as exc:
            sys.modules.pop(module_name, None)
            return broken(f"{name}(): {exc}", read_only)
        spec = described.spec
        info = ToolInfo(name, source, spec.description, read_only, spec)
        return _Loaded(info, stamp, function, described, module_name)


def _import(path: Path, module_name: str) -> types.ModuleType:
    """``path`` run as a fresh module (no bytecode cache: a file rewritten within a second is still re-read)."""
    code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module  # dataclasses and pydantic models in the file look their module up
    try:
        exec(code, module.__dict__)  # noqa: S102 - a tool file is the user's own code, run as documented
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _import_problem(exc: BaseException, path: Path) -> str:
    if isinstance(exc, SyntaxError):
        where = "" if exc.filename in (None, str(path)) else f" in {exc.filename}"
        return f"syntax error{where} on line {exc.lineno}: {exc.msg}"
    if isinstance(exc, SystemExit):
        return f"it calls sys.exit({exc.code!r}) while importing"
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == str(path)]
    where = f" (line {lines[-1]})" if lines else ""
    return f"importing it failed{where}: {describe_error(exc)}"
