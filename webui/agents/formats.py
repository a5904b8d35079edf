"""Tool calls by model family: which format a model writes its calls in, and for templates that know
nothing of tools, how to tell the model about them.

Each :class:`ToolFormat` (see ``formats_base``) parses a whole reply or a stream into content and
calls, builds the GBNF grammar that constrains a call, and writes a call the way the model would. The
format is read off the chat template's text (:func:`detect_format`); :func:`format_by_name` is the
per-model override. Hermes (``<tool_call>`` JSON) is the fallback: the most common convention, and one
that small instruct models follow when the system message spells it out (:func:`tools_system_text`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from webui.agents.formats_base import ToolFormat, ToolStreamParser, example_arguments
from webui.agents.formats_json import (
    DeepSeekFormat,
    HarmonyFormat,
    HermesFormat,
    KimiFormat,
    Llama3Format,
    MistralFormat,
)
from webui.agents.formats_text import GemmaFormat, GlmFormat
from webui.agents.types import ToolCall, ToolSpec
from webui.errors import SettingsError

__all__ = [
    "FORMAT_NAMES",
    "ToolFormat",
    "ToolStreamParser",
    "detect_format",
    "format_by_name",
    "template_handles_tools",
    "tools_system_text",
]

_FORMATS: dict[str, ToolFormat] = {
    fmt.name: fmt
    for fmt in (
        HermesFormat(),
        Llama3Format(),
        MistralFormat("mistral", args_style=False),
        MistralFormat("mistral-args", args_style=True),
        DeepSeekFormat("deepseek", v31=False),
        DeepSeekFormat("deepseek-v3.1", v31=True),
        GemmaFormat("gemma", "<|tool_call>", "<tool_call|>", '<|"|>'),
        GemmaFormat("functiongemma", "<start_function_call>", "<end_function_call>", "<escape>"),
        GlmFormat(),
        KimiFormat(),
        HarmonyFormat(),
    )
}
#: Every format's name (``format_by_name`` takes these).
FORMAT_NAMES: tuple[str, ...] = tuple(_FORMATS)


def format_by_name(name: str) -> ToolFormat:
    """The format called ``name`` (a per-model override)."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise SettingsError(
            f"There is no tool-call format called {name!r}. Known formats: {', '.join(FORMAT_NAMES)}."
        ) from None


def detect_format(template_source: str | None, metadata: dict[str, Any] | None = None) -> ToolFormat:
    """The tool-call format a chat template's model writes, from the markers the template holds.

    ``metadata`` (GGUF keys) supplies the template when ``template_source`` is None. Order matters
    where families share a marker: GLM and Hermes both write ``<tool_call>``.
    """
    src = template_source
    if src is None and metadata:
        src = metadata.get("tokenizer.chat_template")
    if not isinstance(src, str) or not src:
        return _FORMATS["hermes"]
    if "<|channel|>" in src and ("<|call|>" in src or "<|constrain|>" in src or "to=functions." in src):
        return _FORMATS["harmony"]
    if "<｜tool▁calls▁begin｜>" in src:
        # R1 / V3 write the call's type and a ```json fence; V3.1 writes neither.
        r1 = "```json" in src or "tool['type']" in src or 'tool["type"]' in src
        return _FORMATS["deepseek" if r1 else "deepseek-v3.1"]
    if "<|tool_calls_section_begin|>" in src:
        return _FORMATS["kimi"]
    if "<arg_key>" in src:
        return _FORMATS["glm"]
    if "<start_function_call>" in src:
        return _FORMATS["functiongemma"]
    if "<|tool_call>" in src:
        return _FORMATS["gemma"]
    if "[TOOL_CALLS]" in src:
        return _FORMATS["mistral-args" if "[ARGS]" in src else "mistral"]
    if "<tool_call>" in src:
        return _FORMATS["hermes"]
    if "<|python_tag|>" in src or "ipython" in src:
        return _FORMATS["llama3"]
    return _FORMATS["hermes"]


_JINJA_CODE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.DOTALL)
_TOOLS = re.compile(r"\btools\b")


def template_handles_tools(template_source: str | None) -> bool:
    """Whether the template reads ``tools`` (so it describes them to the model itself)."""
    if not template_source:
        return False
    return any(_TOOLS.search(a or b) for a, b in _JINJA_CODE.findall(template_source))


def tools_system_text(tools: Sequence[ToolSpec], fmt: ToolFormat) -> str:
    """The tools and exactly how to call one in ``fmt``, in English, for a system message (templates
    that do not handle tools)."""
    lines = [
        "You can call functions (tools) to help answer. The available functions:",
        "",
    ]
    for tool in tools:
        lines.append(f"- {tool.name}: {tool.description.strip() or '(no description)'}")
        lines.append(f"  Parameters (JSON schema): {json.dumps(tool.parameters, ensure_ascii=False)}")
    example = tools[0] if tools else ToolSpec("example")
    call = ToolCall(name=example.name, arguments=json.dumps(example_arguments(example.parameters or {})))
    lines += [
        "",
        "To call a function, write the call exactly in this form, with the real argument values:",
        fmt.render_call(call),
        "",
        "Use only the functions listed above, and arguments that match their parameters. You may write "
        "a short sentence before the call. After a call, stop and wait: the result comes back in the "
        "next message. If no function is needed, answer normally.",
    ]
    if fmt.parallel_calls:
        lines.append("To call several functions at once, write the calls one after another.")
    return "\n".join(lines)
