"""Tools reach a model's template exactly as transformers' ``apply_chat_template(tools=...)`` passes them.

Our templates run in a guarded sandbox of their own; this renders the same conversation (tools, an
assistant's tool call, the tool's result) through it and through transformers' own renderer and
requires the same text, for the tool-calling templates of each family in tests/data/templates and a
Qwen2.5-style template written the way the real one handles calls and results.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from webui.agents.engine import messages_for_template
from webui.agents.formats import detect_format, template_handles_tools
from webui.agents.types import ToolSpec
from webui.templates.chat_template import ChatTemplate

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "templates"
WEATHER = ToolSpec(
    "get_weather",
    "Get the weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]},
)
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
CONVERSATION = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": 'Weather in Paris? Say "hi" & <b>'},
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21, "sky": "clear"}'},
]
# How Qwen2.5's template handles calls and results (written here, in its shape).
QWEN_STYLE = """{%- if tools %}<|im_start|>system
{{ messages[0].content if messages[0].role == 'system' else 'You are helpful.' }}

# Tools

<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'system' and tools %}
{%- elif message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant
{%- if message.content %}{{ '\\n' + message.content }}{% endif %}
{%- for tool_call in message.tool_calls %}
{%- set tool_call = tool_call.function if tool_call.function is defined else tool_call %}
<tool_call>
{"name": "{{ tool_call.name }}", "arguments": {{ tool_call.arguments | tojson }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{% endif %}
<tool_response>
{{ message.content }}
</tool_response>
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>
{% endif %}
{%- else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def sources() -> list[tuple[str, str]]:
    found = [(p.stem, p.read_text(encoding="utf-8")) for p in sorted(TEMPLATES.glob("*.jinja"))]
    return [("qwen-style", QWEN_STYLE), *[(n, s) for n, s in found if template_handles_tools(s)]]


@pytest.mark.parametrize(("name", "source"), sources(), ids=[n for n, _ in sources()])
def test_tools_render_as_transformers_renders_them(name, source):
    messages = messages_for_template(CONVERSATION, detect_format(source), True, [WEATHER])
    tools = [WEATHER.openai()]
    ours = ChatTemplate.compile(source, name).render(messages, add_generation_prompt=True, tools=tools)
    theirs = render_jinja_template(
        [messages], tools=tools, chat_template=source, add_generation_prompt=True, bos_token="", eos_token=""
    )
    theirs = theirs[0][0] if isinstance(theirs, tuple) else theirs
    assert ours == theirs
    assert "get_weather" in ours


def test_the_qwen_style_template_shows_the_call_and_its_result():
    messages = messages_for_template(CONVERSATION, detect_format(QWEN_STYLE), True, [WEATHER])
    text = ChatTemplate.compile(QWEN_STYLE, "q").render(messages, add_generation_prompt=True, tools=[WEATHER.openai()])
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in text
    assert '<tool_response>\n{"temp": 21' in text
    assert '"description": "Get the weather in a city."' in text
