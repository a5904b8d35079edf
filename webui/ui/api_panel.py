"""API tab: whether the OpenAI-compatible API is on, where it answers, and code to copy that calls it.

Like LM Studio's server page: a student connecting a client (openai, AutoGen / AutoGen Studio,
LangChain, curl) finds the base URL, the model name and whether a key is needed here rather than
in the README. The key itself is never shown: whoever started the server knows it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import gradio as gr

from webui.services import Services
from webui.settings import Settings
from webui.ui.i18n import page_language, t, tr

#: Where ``webui/app.py`` mounts the API.
API_PREFIX = "/v1"
#: Stands for the key in the snippets when one is needed (the real one is never shown).
KEY_PLACEHOLDER = "YOUR_API_KEY"
#: What the snippets pass when the server needs no key (the clients insist on some text).
NO_KEY = "not-needed"
QUESTION = "Say hello in one sentence."


@dataclass(frozen=True)
class Connection:
    """What a client needs to reach the API from the page's point of view."""

    base_url: str
    model: str
    key_needed: bool
    #: The loaded model sees images (the snippets' ``vision``); tools, JSON and JSON schemas always work.
    vision: bool = False

    @property
    def api_key(self) -> str:
        return KEY_PLACEHOLDER if self.key_needed else NO_KEY


def api_enabled(settings: Settings) -> bool:
    """``--api-key`` implies ``--api`` (``webui/app.py`` includes the routes for either)."""
    return bool(settings.api or settings.api_key)


def base_url(settings: Settings, request: gr.Request | None) -> str:
    """The API's address as this page reached the server (its Host header), else from the settings."""
    headers = getattr(request, "headers", None) or {}
    host = headers.get("x-forwarded-host") or headers.get("host")
    if host:
        scheme = headers.get("x-forwarded-proto") or "http"
        return f"{scheme}://{host}{API_PREFIX}"
    bind = settings.host
    shown = "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind
    if ":" in shown:  # an IPv6 address goes in brackets
        shown = f"[{shown}]"
    return f"http://{shown}:{settings.listen_port}{API_PREFIX}"


def snippets(conn: Connection) -> dict[str, str]:
    """Ready-to-run code for each client, keyed by the client's name."""
    url, model, key = conn.base_url, conn.model, conn.api_key
    openai_py = f'''from openai import OpenAI

client = OpenAI(base_url="{url}", api_key="{key}")
reply = client.chat.completions.create(
    model="{model}",
    messages=[{{"role": "user", "content": "{QUESTION}"}}],
)
print(reply.choices[0].message.content)
'''
    # AutoGen needs model_info for a model name it does not know: what this API does for the loaded model
    # (tool calls, JSON mode and JSON schemas on every model, since the agents work; images when it sees them).
    autogen_py = f'''import asyncio

from autogen_agentchat.agents import AssistantAgent
from autogen_ext.models.openai import OpenAIChatCompletionClient

client = OpenAIChatCompletionClient(
    model="{model}",
    base_url="{url}",
    api_key="{key}",
    model_info={{
        "vision": {conn.vision},
        "function_calling": True,
        "json_output": True,
        "structured_output": True,
        "family": "unknown",
        "multiple_system_messages": False,
    }},
)
agent = AssistantAgent("assistant", model_client=client)
result = asyncio.run(agent.run(task="{QUESTION}"))
print(result.messages[-1].content)
'''
    langchain_py = f'''from langchain_openai import ChatOpenAI

llm = ChatOpenAI(model="{model}", base_url="{url}", api_key="{key}")
print(llm.invoke("{QUESTION}").content)
'''
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 100},
        ensure_ascii=False,
    ).replace("'", "'\\''")  # inside single quotes for the shell
    auth = f' \\\n  -H "Authorization: Bearer {key}"' if conn.key_needed else ""
    curl = f"""curl {url}/chat/completions \\
  -H "Content-Type: application/json"{auth} \\
  -d '{body}'
"""
    return {"openai": openai_py, "autogen": autogen_py, "langchain": langchain_py, "curl": curl}


#: (snippet name, catalogue key of its label, language of the code box)
SNIPPETS: tuple[tuple[str, str, Any], ...] = (
    ("openai", "api.snippet_openai", "python"),
    ("autogen", "api.snippet_autogen", "python"),
    ("langchain", "api.snippet_langchain", "python"),
    ("curl", "api.snippet_curl", "shell"),
)


def connection(services: Services, request: gr.Request | None) -> Connection:
    current = services.models.current
    settings = services.settings
    return Connection(
        base_url(settings, request),
        current.name if current else "local-model",
        bool(settings.api_key),
        vision=bool(current and current.backend.capabilities.images),
    )


def status_markdown(services: Services, conn: Connection, lang: str) -> str:
    """The panel's text: on or off, address, key, model name (as a table to read off)."""
    settings = services.settings
    if not api_enabled(settings):
        return tr("api.off", lang, url=conn.base_url)
    current = services.models.current
    key = tr("api.key_needed" if conn.key_needed else "api.key_not_needed", lang)
    model = tr("api.model_loaded", lang, name=current.name) if current is not None else tr("api.model_none", lang)
    lines = [
        tr("api.on", lang),
        "",
        f"| {tr('api.what', lang)} | {tr('api.value', lang)} |",
        "|---|---|",
        f"| {tr('api.base_url', lang)} | `{conn.base_url}` |",
        f"| {tr('api.key', lang)} | {key} |",
        f"| {tr('api.model', lang)} | {model} |",
        "",
        tr("api.studio", lang, url=conn.base_url, model=conn.model),
    ]
    return "\n".join(lines)


def build_api_tab(services: Services) -> dict[str, Any]:
    enabled = api_enabled(services.settings)
    status = gr.Markdown("", elem_id="api-status")
    codes: list[Any] = []
    for name, label, language in SNIPPETS:
        codes.append(
            gr.Code(
                "",
                language=language,
                label=t(label),
                elem_id=f"api-snippet-{name}",
                interactive=False,
                visible=enabled,
            )
        )

    def page_state(request: gr.Request) -> list[Any]:
        """Filled in on each page load: the address this page used, the model loaded now, the page's language."""
        conn = connection(services, request)
        code = snippets(conn)
        return [status_markdown(services, conn, page_language(request)), *(code[name] for name, _, _ in SNIPPETS)]

    return {"page_load": page_state, "page_load_outputs": [status, *codes]}
