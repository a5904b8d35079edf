"""The ToolBox: every provider's tools under one name space, and calls that never raise.

It owns what holds for every tool, whatever its source: names are unique (a later duplicate is
listed with an error), the arguments are JSON matching the tool's schema before anything runs, a
call ends within the timeout, and its result is bounded in size with a notice where it was cut.
Approval is not here: the chat service asks the user before it calls :meth:`ToolBox.run`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from webui.agents.types import ToolSpec
from webui.structured.schema import validate
from webui.tools.types import ToolInfo, ToolProvider, ToolResult

log = logging.getLogger(__name__)


class ToolBox:
    """All tools of ``providers`` (tool files, MCP servers), checked and bounded."""

    def __init__(self, providers: list[ToolProvider], *, timeout: float, max_result_chars: int) -> None:
        self._providers = list(providers)
        self._lock = threading.Lock()
        #: Seconds a call may run (the app may change it while running).
        self.timeout = timeout
        #: Longest result text given back; longer ones are cut with a notice.
        self.max_result_chars = max_result_chars

    @property
    def providers(self) -> list[ToolProvider]:
        with self._lock:
            return list(self._providers)

    def add_provider(self, provider: ToolProvider) -> None:
        """Add a source of tools (an MCP server that came up); its tools come after the others'."""
        with self._lock:
            if provider not in self._providers:
                self._providers.append(provider)

    def remove_provider(self, provider: ToolProvider) -> None:
        """Drop a source of tools (an MCP server that was removed); unknown ones are ignored."""
        with self._lock:
            if provider in self._providers:
                self._providers.remove(provider)

    def reload(self) -> None:
        """Ask every provider that can to read its tools again (tool files re-read the folder)."""
        for provider in self.providers:
            reload = getattr(provider, "reload", None)
            if callable(reload):
                try:
                    reload()
                except Exception:
                    log.exception("Reloading the tools of %s failed", _source(provider))

    def listing(self) -> list[ToolInfo]:
        """Every tool of every provider, in provider order; a name taken already is listed with an error."""
        return [info for info, _ in self._table()]

    def info(self, name: str) -> ToolInfo | None:
        """The tool the model reaches by ``name`` (usable or not), or None."""
        entry = self._find(name)
        return entry[0] if entry else None

    def specs(self, names: Iterable[str]) -> list[ToolSpec]:
        """The specs of the usable tools among ``names`` (unknown and broken ones are left out), in listing order."""
        wanted = set(names)
        return [info.spec for info, _ in self._table() if info.name in wanted and info.spec and not info.error]

    def run(self, name: str, arguments: str, cancel: threading.Event) -> ToolResult:
        """Call tool ``name`` with ``arguments`` (the model's JSON text). Never raises: problems are error results.

        Every result, errors included, is at most ``max_result_chars`` long plus the truncation notice.
        """
        try:
            result = self._run(name, arguments, cancel)
        except Exception as exc:  # a provider that breaks its promise not to raise
            log.exception("Tool %s raised", name)
            result = ToolResult(f"The tool {name} failed: {type(exc).__name__}: {exc}", error=True)
        return self._bounded(result)

    # ---- internals -------------------------------------------------------------------------

    def _run(self, name: str, arguments: str, cancel: threading.Event) -> ToolResult:
        entry = self._find(name)
        if entry is None:
            usable = [info.name for info, _ in self._table() if info.spec and not info.error]
            known = f" The tools are: {', '.join(usable)}." if usable else " No tools are available."
            return ToolResult(f"There is no tool named '{name}'.{known}", error=True)
        info, provider = entry
        if info.error or info.spec is None:
            return ToolResult(f"The tool {name} cannot be used: {info.error or 'it has no schema'}", error=True)
        parsed = _parse_arguments(name, arguments)
        if isinstance(parsed, ToolResult):
            return parsed
        try:
            problems = validate(info.spec.parameters, parsed)
        except Exception as exc:  # a schema the validator cannot use (an MCP server's own)
            return ToolResult(f"The schema of {name} cannot be checked: {exc}", error=True)
        if problems:
            listed = "\n".join(f"- {problem}" for problem in problems)
            return ToolResult(f"The arguments of {name} do not match its schema:\n{listed}", error=True)
        if cancel.is_set():
            return ToolResult(f"The tool {name} was stopped by the user.", error=True)
        return provider.call(name, parsed, cancel, self.timeout)

    def _bounded(self, result: ToolResult) -> ToolResult:
        limit = self.max_result_chars
        if len(result.text) <= limit:
            return result
        more = len(result.text) - limit
        return replace(result, text=f"{result.text[:limit]}\n[... truncated: {more} more characters]", truncated=True)

    def _table(self) -> list[tuple[ToolInfo, ToolProvider]]:
        taken: dict[str, str] = {}
        table = []
        for provider in self.providers:
            try:
                infos = provider.tools()
            except Exception as exc:
                log.exception("Listing the tools of %s failed", _source(provider))
                source = _source(provider)
                infos = [ToolInfo(f"({source})", source, error=f"Its tools cannot be listed: {exc}")]
            for info in infos:
                if info.name in taken:
                    info = replace(
                        info,
                        spec=None,
                        error=f"Another tool named '{info.name}' comes first ({taken[info.name]}); this one is not used.",
                    )
                else:
                    taken[info.name] = info.source
                table.append((info, provider))
        return table

    def _find(self, name: str) -> tuple[ToolInfo, ToolProvider] | None:
        # The first one of that name: later duplicates are listed only to show their error.
        return next(((i, p) for i, p in self._table() if i.name == name), None)


def _parse_arguments(name: str, arguments: str) -> dict[str, Any] | ToolResult:
    text = (arguments or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        return ToolResult(f"The arguments of {name} are not valid JSON ({detail}): {text[:200]}", error=True)
    if not isinstance(value, dict):
        return ToolResult(f"The arguments of {name} must be a JSON object, not {type(value).__name__}.", error=True)
    return value


def _source(provider: object) -> str:
    return str(getattr(provider, "source", None) or type(provider).__name__)
