"""remote loader: any OpenAI-compatible server (llama.cpp server, Tabby, vLLM, LM Studio, Ollama, this app).

For users whose model does not fit their machine. Where the server offers
``/v1/completions`` we send the prompt we built (streamed), so the Chat tab's modes
and templates work the same as locally. A server that offers only
``/v1/chat/completions`` (hosted APIs, some Ollama and vLLM setups) gets the
request as messages instead (``StreamExtras.chat``): it applies its own template,
and tools, tool_choice and response_format pass through to it unchanged; raw text
(the Notebook) is refused there rather than quietly turned into a chat message.
Token counts come from the server's tokenize endpoint when it has one, and are
estimated (about 4 characters a token) and marked so when not.

Log-probabilities: through the chat API they are OpenAI's ``logprobs``/``top_logprobs``. Through
``/v1/completions`` they are the ``logprobs`` field (the top n alternatives of each token), asked for
only when a request wants them; whether the server returns them is found out when it loads (the
one-token probe asks for them), and ``capabilities.logprobs`` says so. That is the model's distribution
before the server's samplers: what the samplers then did, a server does not send.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, NoReturn

import httpx
from httpx_sse import SSEError, connect_sse

from webui.attachments.types import ImageInput
from webui.errors import GenerationError, ModelLoadError, UnsupportedFeatureError
from webui.loaders.base import (
    Backend,
    Capabilities,
    ChatPayload,
    Chunk,
    FinishReason,
    StopStringFilter,
    StreamExtras,
    TokenLogprob,
    ToolCallDelta,
    TopLogprob,
)
from webui.params import LoadOptions, SamplingParams

TIMEOUT = httpx.Timeout(30.0, read=300.0)

RemoteApi = Literal["completions", "chat"]
#: The path each API posts to (also what the Model tab shows as the API in use).
API_PATHS: dict[RemoteApi, str] = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
#: What a server answers for a route it does not have (404; 405 where only the method is known;
#: 501 from servers that list it as not implemented).
ABSENT = frozenset({404, 405, 501})

NO_VIEWS = (
    "A remote server does not send what its samplers did to each token: the probabilities view needs a "
    "model loaded on this machine (llama.cpp or transformers). Ask for top_logprobs instead: where the "
    "server returns them, they show the model's candidates before sampling."
)
NO_LOGITS = (
    "The sampler playground is not available on a remote server: a remote server does not send its logits. "
    "Load a model on this machine (llama.cpp or transformers) to use it."
)

NO_ECHO = (
    "The remote loader cannot return the prompt's logprobs (echo, which perplexity needs): it asks the server "
    "for a streamed answer, which holds only the generated tokens' logprobs."
)

CHAT_ONLY = (
    "This server only offers chat completions: use the Chat tab or /v1/chat/completions; raw text "
    "completion (Notebook) needs a server with /v1/completions."
)


def _explain(exc: Exception, url: str) -> str:
    if isinstance(exc, SSEError):  # an httpx error too: test it first
        return f"{url} did not answer with an event stream: {exc}"
    if isinstance(exc, httpx.ConnectError):
        return f"Cannot connect to {url}: the connection was refused or the host is unknown. Is the server running?"
    if isinstance(exc, httpx.TimeoutException):
        return f"{url} did not answer in time."
    return f"{url}: {exc}"


def _server_error(body: Any) -> str | None:
    """The message of an OpenAI-shaped error (``{"error": {"message": ...}}`` or ``{"error": "..."}``)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not error:
        return None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or error.get("code") or error)
    return str(error)


def list_remote_models(url: str, key: str = "") -> list[str]:
    """The model names an OpenAI-compatible server lists at /v1/models."""
    url = url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        r = httpx.get(url + "/v1/models", headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        raise ModelLoadError(_explain(exc, url)) from exc
    if r.status_code in (401, 403):
        raise ModelLoadError(f"{url} refused the API key ({r.status_code}). Check the remote key.")
    if r.status_code != 200:
        raise ModelLoadError(f"{url}/v1/models answered {r.status_code}.")
    return [m["id"] for m in r.json().get("data", []) if isinstance(m, dict) and m.get("id")]


class CompletionsProbe(NamedTuple):
    """What a one-token request to ``/v1/completions`` found out."""

    #: The server has the route (a chat-only one answers 404).
    offered: bool
    #: Its answer carried the logprobs the probe asked for.
    logprobs: bool


def probe_completions(client: httpx.Client, url: str, model: str) -> CompletionsProbe:
    """Whether the server has ``/v1/completions`` and returns logprobs there: a one-token request that
    asks for them, which any such server answers (a 400 for a body it dislikes still says the route
    is there) and a chat-only one answers 404. Only an answer that holds them counts as logprobs:
    many servers accept the field and send ``"logprobs": null``."""
    probe = {"model": model, "prompt": "Hello", "max_tokens": 1, "stream": False, "logprobs": 1}
    try:
        r = client.post(API_PATHS["completions"], json=probe)
    except httpx.HTTPError as exc:
        raise ModelLoadError(_explain(exc, url)) from exc
    if r.status_code in ABSENT:
        return CompletionsProbe(False, False)
    logprobs = False
    if r.status_code == 200:
        try:
            choices = r.json().get("choices")
        except (ValueError, AttributeError):
            choices = None
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            logprobs = bool(_completion_logprobs(choices[0].get("logprobs"), 1))
    return CompletionsProbe(True, logprobs)


def _tool_call_deltas(raw: Any) -> list[ToolCallDelta] | None:
    """``delta.tool_calls`` as :class:`ToolCallDelta` pieces (None when the event has none)."""
    if not isinstance(raw, list) or not raw:
        return None
    calls = []
    for position, call in enumerate(raw):
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        arguments = function.get("arguments") or ""
        if not isinstance(arguments, str):  # a few servers send the arguments as an object
            arguments = json.dumps(arguments, ensure_ascii=False)
        index = call.get("index")
        calls.append(
            ToolCallDelta(
                index=index if isinstance(index, int) else position,
                id=call.get("id") or None,
                name=function.get("name") or None,
                arguments=arguments,
            )
        )
    return calls or None


def _token_bytes(entry: dict[str, Any]) -> tuple[int, ...]:
    raw = entry.get("bytes")
    if isinstance(raw, list):
        return tuple(int(b) for b in raw)
    return tuple(str(entry.get("token", "")).encode("utf-8"))


def _chat_logprobs(raw: Any, top_n: int) -> list[TokenLogprob]:
    """OpenAI's chat ``choices[].logprobs.content`` as :class:`TokenLogprob` entries, each with the
    ``top_n`` best alternatives (llama-cpp-python adds the chosen token when it is not among them)."""
    content = raw.get("content") if isinstance(raw, dict) else None
    if not isinstance(content, list):
        return []
    entries = []
    for item in content:
        if not isinstance(item, dict) or "token" not in item:
            continue
        top = [
            TopLogprob(str(t.get("token", "")), float(t.get("logprob", float("-inf"))), _token_bytes(t))
            for t in item.get("top_logprobs") or []
            if isinstance(t, dict)
        ]
        top.sort(key=lambda t: t.logprob, reverse=True)
        logprob = item.get("logprob")
        entries.append(
            TokenLogprob(
                str(item["token"]),
                None if logprob is None else float(logprob),
                _token_bytes(item),
                tuple(top[:top_n]),
            )
        )
    return entries


def _completion_logprobs(raw: Any, top_n: int) -> list[TokenLogprob]:
    """A completions event's ``choices[].logprobs`` as :class:`TokenLogprob` entries, each with the
    ``top_n`` best alternatives, best first.

    OpenAI's completions shape is parallel lists (``tokens``, ``token_logprobs``, ``top_logprobs`` of
    ``{text: logprob}`` maps; llama-cpp-python adds the drawn token to its map when it is not among
    the best). llama.cpp's own server sends the chat shape (``content``) here too: both are read.
    """
    if not isinstance(raw, dict):
        return []
    if isinstance(raw.get("content"), list):
        return _chat_logprobs(raw, top_n)
    tokens = raw.get("tokens")
    if not isinstance(tokens, list):
        return []
    logprobs = raw.get("token_logprobs")
    tops = raw.get("top_logprobs")
    logprobs = logprobs if isinstance(logprobs, list) else []
    tops = tops if isinstance(tops, list) else []
    entries = []
    for i, token in enumerate(tokens):
        text = str(token)
        logprob = logprobs[i] if i < len(logprobs) else None
        found = tops[i] if i < len(tops) else None
        top = [
            TopLogprob(str(t), float(lp), tuple(str(t).encode("utf-8")))
            for t, lp in (found.items() if isinstance(found, dict) else ())
            if isinstance(lp, (int, float))
        ]
        top.sort(key=lambda t: t.logprob, reverse=True)
        entries.append(
            TokenLogprob(
                text,
                float(logprob) if isinstance(logprob, (int, float)) else None,
                tuple(text.encode("utf-8")),
                tuple(top[:top_n]),
            )
        )
    return entries


def _messages_text(messages: tuple[dict[str, Any], ...]) -> str:
    """The text in a request's messages, for estimating its size when the server does not say."""
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
        for call in message.get("tool_calls") or []:
            if isinstance(call, dict):
                parts.append(json.dumps(call.get("function", {}), ensure_ascii=False))
    return "\n".join(p for p in parts if p)


class RemoteBackend(Backend):
    name: ClassVar[str] = "remote"
    supported_params: ClassVar[frozenset[str]] = frozenset(
        {
            "max_tokens",
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "typical_p",
            "repeat_penalty",
            "presence_penalty",
            "frequency_penalty",
            "seed",
            "do_sample",
            "stop",
        }
    )
    option_fields: ClassVar[tuple[str, ...]] = ("remote_url", "remote_key", "remote_model", "remote_api", "n_ctx")
    # A server's model: nothing on this machine to check the RAM of or to save settings for, and
    # token counts are exact only where the server has a tokenize endpoint. Logprobs: per instance,
    # where the server returned them to the probe (``probe_completions``).
    capabilities: ClassVar[Capabilities] = Capabilities(local_files=False, exact_tokens=False)
    #: Through the chat API the server applies its own template and parses its own tool calls.
    chat_capabilities: ClassVar[Capabilities] = Capabilities(
        local_files=False, exact_tokens=False, tools=True, logprobs=True, chat_messages=True, images=True
    )
    #: What an image is counted as in the prompt budget: the server does not say (a typical vision
    #: encoder's count; the server refuses images if its model has no vision).
    IMAGE_TOKENS_ESTIMATE: ClassVar[int] = 256

    def __init__(
        self,
        client: httpx.Client,
        url: str,
        model: str,
        n_ctx: int,
        chat_template: str | None,
        api: RemoteApi = "completions",
        logprobs: bool = False,
    ) -> None:
        self._client = client
        self.url = url
        self.model = model
        self.path = None
        self.served_name = model
        self.n_ctx = n_ctx
        self.chat_template = chat_template
        self.api: RemoteApi = api
        self.metadata = {"remote.url": url, "remote.model": model, "remote.api": API_PATHS[api]}
        self.tokens_estimated = False
        self._tokenize_path: str | None = None
        if api == "chat":
            # Per instance: the same loader talks either API, chosen when it loads.
            self.capabilities = self.chat_capabilities  # type: ignore[misc]
        elif logprobs:  # the server returned logprobs from /v1/completions when it was probed
            self.capabilities = replace(self.capabilities, logprobs=True)  # type: ignore[misc]

    def image_tokens(self, image: ImageInput) -> int:
        return self.IMAGE_TOKENS_ESTIMATE if self.capabilities.images else 0

    @classmethod
    def check(cls, path: Path | None, options: LoadOptions) -> None:
        if not options.remote_url.startswith(("http://", "https://")):
            raise ModelLoadError("Give the remote server's address, e.g. http://127.0.0.1:5000 (remote URL).")

    @classmethod
    def load(cls, path: Path | None, options: LoadOptions) -> RemoteBackend:
        cls.check(path, options)
        url = options.remote_url.rstrip("/").removesuffix("/v1")
        headers = {"Authorization": f"Bearer {options.remote_key}"} if options.remote_key else {}
        client = httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT)
        try:
            return cls._connect(client, url, options)
        except BaseException:
            client.close()
            raise

    @classmethod
    def _connect(cls, client: httpx.Client, url: str, options: LoadOptions) -> RemoteBackend:
        try:
            r = client.get("/v1/models")
        except httpx.HTTPError as exc:
            raise ModelLoadError(_explain(exc, url)) from exc
        if r.status_code in (401, 403):
            raise ModelLoadError(f"{url} refused the API key ({r.status_code}). Check the remote key.")
        if r.status_code != 200:
            raise ModelLoadError(f"{url}/v1/models answered {r.status_code}: {r.text[:200]}")
        names = [m.get("id", "") for m in r.json().get("data", []) if isinstance(m, dict)]
        model = options.remote_model or (names[0] if names else "")
        if not model:
            raise ModelLoadError(f"{url} lists no models; type the model name.")
        api: RemoteApi = "chat" if options.remote_api == "chat" else "completions"
        logprobs = False
        if api == "completions":  # also when it is named: whether it returns logprobs is asked all the same
            probe = probe_completions(client, url, model)
            if options.remote_api == "auto" and not probe.offered:
                api = "chat"
            logprobs = probe.logprobs
        template, server_ctx = None, 0
        try:  # llama.cpp's server (and this app's) tells its chat template and context size
            props = client.get("/props")
            if props.status_code == 200:
                told = props.json()
                template = told.get("chat_template") or None
                settings = told.get("default_generation_settings")
                n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
                server_ctx = n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else 0
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        # (never more than the server holds: a longer prompt would be the server's error, not our truncation)
        n_ctx = min(options.n_ctx or server_ctx, server_ctx) if server_ctx else options.n_ctx or 4096
        return cls(client, url, model, n_ctx, template, api, logprobs)

    def tokenize(self, text: str) -> list[int]:
        candidates = [self._tokenize_path] if self._tokenize_path else ["/extras/tokenize", "/tokenize"]
        for path in candidates:
            if path is None:
                continue
            body = {"input": text, "model": self.model} if path == "/extras/tokenize" else {"content": text}
            try:
                r = self._client.post(path, json=body)
            except httpx.HTTPError:
                continue
            if r.status_code == 200 and isinstance(r.json().get("tokens"), list):
                self._tokenize_path = path
                return list(r.json()["tokens"])
        self.tokens_estimated = True
        return [0] * max(1, len(text) // 4)

    def _sampling(self, params: SamplingParams) -> dict[str, Any]:
        """The sampling fields of either request body."""
        return {
            "model": self.model,
            "stream": True,
            "max_tokens": params.max_tokens,
            "temperature": 0.0 if params.greedy else params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "min_p": params.min_p,
            "typical_p": params.typical_p,
            "repeat_penalty": params.repeat_penalty,
            "presence_penalty": params.presence_penalty,
            "frequency_penalty": params.frequency_penalty,
            "seed": params.seed,
            "stop": params.stop or None,
        }

    def _chat_body(self, chat: ChatPayload, params: SamplingParams, extras: StreamExtras) -> dict[str, Any]:
        body: dict[str, Any] = {
            **self._sampling(params),
            "messages": list(chat.messages),
            # the usage event at the end gives the prompt's size as the server's template made it
            "stream_options": {"include_usage": True},
        }
        if chat.tools:
            body["tools"] = list(chat.tools)
        if chat.tool_choice is not None:
            body["tool_choice"] = chat.tool_choice
        if chat.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = chat.parallel_tool_calls
        if chat.response_format is not None:
            body["response_format"] = chat.response_format
        if extras.top_logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = extras.top_logprobs
        return {**(chat.extra or {}), **body}  # extra fields add to the request, never replace its own

    def _events(self, path: str, body: dict[str, Any]) -> Generator[dict[str, Any], None, None]:
        """The JSON events of a streamed answer, until ``[DONE]``.

        A server's error (an HTTP status, an error event, an event that is not JSON, an answer that
        is not a stream) is a ``GenerationError`` with the server's own message. Closing this
        generator closes the connection, which stops the server too.
        """
        try:
            with connect_sse(self._client, "POST", path, json=body) as source:
                r = source.response
                if r.status_code != 200:
                    r.read()
                    try:
                        told = _server_error(r.json())
                    except ValueError:
                        told = None
                    raise GenerationError(f"{self.url} answered {r.status_code}: {told or r.text[:300]}")
                for sse in source.iter_sse():
                    if sse.data == "[DONE]":
                        return
                    if not sse.data:
                        continue
                    try:
                        event = sse.json()
                    except ValueError:
                        raise GenerationError(
                            f"{self.url} sent an event that is not JSON: {sse.data[:200]!r}"
                        ) from None
                    # A server that fails mid-stream (out of memory, a crashed worker) says so in an
                    # event of OpenAI's error shape, or under the SSE event name "error".
                    told = _server_error(event)
                    if told is not None or sse.event == "error":
                        raise GenerationError(f"{self.url} stopped with an error: {told or sse.data[:300]}")
                    if isinstance(event, dict):
                        yield event
        except httpx.HTTPError as exc:
            raise GenerationError(_explain(exc, self.url)) from exc

    def next_token_logits(self, prompt: str) -> NoReturn:
        raise UnsupportedFeatureError(NO_LOGITS)

    def token_text(self, token: int) -> NoReturn:
        raise UnsupportedFeatureError(NO_LOGITS)

    def stream(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, extras: StreamExtras | None = None
    ) -> Iterator[Chunk]:
        if extras is not None and extras.sampler_views is not None:
            raise UnsupportedFeatureError(NO_VIEWS)
        if self.api == "chat":
            yield from self._stream_chat(params, cancel, extras or StreamExtras())
            return
        extras = extras or StreamExtras()
        if extras.echo_logprobs:
            raise UnsupportedFeatureError(NO_ECHO)
        top_n = extras.top_logprobs
        body = {**self._sampling(params), "prompt": prompt}
        if top_n is not None:
            # Asked even where the probe found none: an answer without them leaves the chunks' logprobs
            # empty, which the caller sees (the Notebook then says the server sends none).
            body["logprobs"] = top_n
        out = StopStringFilter(params.stop, logprobs=top_n is not None)
        finish: FinishReason = "stop"
        with closing(self._events(API_PATHS["completions"], body)) as events:
            for event in events:
                if cancel.is_set():
                    finish = "cancelled"
                    break  # closing the events closes the connection: the server stops too
                choice = (event.get("choices") or [{}])[0]
                if not isinstance(choice, dict):
                    choice = {}
                entries = _completion_logprobs(choice.get("logprobs"), top_n) if top_n is not None else []
                # One token an event, unless the server says how many its logprobs cover.
                chunk = out.feed(choice.get("text") or "", len(entries) or 1, entries)
                if choice.get("finish_reason") == "length":
                    finish = "length"
                if out.stopped:
                    break
                if chunk is not None:
                    yield chunk
        yield out.finish(finish, len(self.tokenize(prompt)))

    def _stream_chat(self, params: SamplingParams, cancel: threading.Event, extras: StreamExtras) -> Iterator[Chunk]:
        chat = extras.chat
        if chat is None:
            raise UnsupportedFeatureError(CHAT_ONLY)
        if extras.echo_logprobs:
            raise UnsupportedFeatureError("The server's chat API does not return the prompt's logprobs (echo).")
        if params.grammar_string or extras.grammar_triggers:
            raise UnsupportedFeatureError(
                "A GBNF grammar cannot be sent through the server's chat API: use response_format with a JSON schema."
            )
        out = StopStringFilter(params.stop)
        finish: FinishReason = "stop"
        finish_tool_calls = False
        usage: dict[str, Any] = {}
        sent_tokens = 0  # tokens of the chunks yielded so far
        pending: list[TokenLogprob] = []  # logprobs of text the stop filter still holds back
        top_n = extras.top_logprobs
        with closing(self._events(API_PATHS["chat"], self._chat_body(chat, params, extras))) as events:
            for event in events:
                if cancel.is_set():
                    finish = "cancelled"
                    break
                if isinstance(event.get("usage"), dict):
                    usage = event["usage"]
                choices = event.get("choices") or []
                choice = choices[0] if choices and isinstance(choices[0], dict) else {}
                delta = choice.get("delta")
                if not isinstance(delta, dict):
                    delta = {}
                if top_n is not None:
                    pending += _chat_logprobs(choice.get("logprobs"), top_n)
                reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
                calls = _tool_call_deltas(delta.get("tool_calls"))
                content = delta.get("content") or ""
                chunk = out.feed(content, 1) if content else None
                if out.stopped:
                    break
                if chunk is None and (reasoning or calls):
                    chunk = Chunk("", n_tokens=0 if content else 1)
                if chunk is not None:
                    chunk.reasoning = str(reasoning)
                    chunk.tool_calls = calls
                    if top_n is not None and chunk.text:
                        chunk.logprobs, pending = pending, []
                    sent_tokens += chunk.n_tokens
                    yield chunk
                reason = choice.get("finish_reason")
                if reason == "length":
                    finish = "length"
                elif reason in ("tool_calls", "function_call"):
                    finish_tool_calls = True
        prompt_tokens = usage.get("prompt_tokens")
        if not isinstance(prompt_tokens, int):
            prompt_tokens = len(self.tokenize(_messages_text(chat.messages)))
        last = out.finish(finish, prompt_tokens)
        if top_n is not None and pending and last.text:
            last.logprobs = pending
        completion_tokens = usage.get("completion_tokens")
        if isinstance(completion_tokens, int):  # the server's count wins over ours (we count one an event)
            last.n_tokens = max(0, completion_tokens - sent_tokens)
        last.finish_tool_calls = finish_tool_calls
        yield last

    def close(self) -> None:
        self._client.close()
