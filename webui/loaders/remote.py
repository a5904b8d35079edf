"""remote loader: any OpenAI-compatible server (llama.cpp server, Tabby, vLLM, LM Studio, Ollama, this app).

For users whose model does not fit their machine. We send the prompt we built
(``/v1/completions``, streamed), so the Chat tab's modes and templates work the
same as locally. Token counts come from the server's tokenize endpoint when it
has one, and are estimated (about 4 characters a token) and marked so when not.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
from httpx_sse import SSEError, connect_sse

from webui.errors import GenerationError, ModelLoadError
from webui.loaders.base import Backend, Capabilities, Chunk, FinishReason, StopStringFilter, StreamExtras
from webui.params import LoadOptions, SamplingParams

TIMEOUT = httpx.Timeout(30.0, read=300.0)


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
    option_fields: ClassVar[tuple[str, ...]] = ("remote_url", "remote_key", "remote_model", "n_ctx")
    # A server's model: nothing on this machine to check the RAM of or to save settings for, and
    # token counts are exact only where the server has a tokenize endpoint.
    capabilities: ClassVar[Capabilities] = Capabilities(local_files=False, exact_tokens=False)

    def __init__(self, client: httpx.Client, url: str, model: str, n_ctx: int, chat_template: str | None) -> None:
        self._client = client
        self.url = url
        self.model = model
        self.path = None
        self.served_name = model
        self.n_ctx = n_ctx
        self.chat_template = chat_template
        self.metadata = {"remote.url": url, "remote.model": model}
        self.tokens_estimated = False
        self._tokenize_path: str | None = None

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
            r = client.get("/v1/models")
        except httpx.HTTPError as exc:
            client.close()
            raise ModelLoadError(_explain(exc, url)) from exc
        if r.status_code in (401, 403):
            client.close()
            raise ModelLoadError(f"{url} refused the API key ({r.status_code}). Check the remote key.")
        if r.status_code != 200:
            client.close()
            raise ModelLoadError(f"{url}/v1/models answered {r.status_code}: {r.text[:200]}")
        names = [m.get("id", "") for m in r.json().get("data", []) if isinstance(m, dict)]
        model = options.remote_model or (names[0] if names else "")
        if not model:
            client.close()
            raise ModelLoadError(f"{url} lists no models; type the model name.")
        template = None
        try:  # llama.cpp's server tells its chat template
            props = client.get("/props")
            if props.status_code == 200:
                template = props.json().get("chat_template") or None
        except (httpx.HTTPError, ValueError):
            pass
        return cls(client, url, model, options.n_ctx or 4096, template)

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

    def _body(self, prompt: str, params: SamplingParams) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt": prompt,
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

    def stream(
        self, prompt: str, params: SamplingParams, cancel: threading.Event, extras: StreamExtras | None = None
    ) -> Iterator[Chunk]:
        out = StopStringFilter(params.stop)
        finish: FinishReason = "stop"
        try:
            with connect_sse(self._client, "POST", "/v1/completions", json=self._body(prompt, params)) as source:
                r = source.response
                if r.status_code != 200:
                    r.read()
                    try:
                        told = _server_error(r.json())
                    except ValueError:
                        told = None
                    raise GenerationError(f"{self.url} answered {r.status_code}: {told or r.text[:300]}")
                for sse in source.iter_sse():
                    if cancel.is_set():
                        finish = "cancelled"
                        break  # leaving the block closes the connection: the server stops too
                    if sse.data == "[DONE]":
                        break
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
                    choice = (event.get("choices") or [{}])[0] if isinstance(event, dict) else {}
                    chunk = out.feed(choice.get("text") or "", 1)
                    if choice.get("finish_reason") == "length":
                        finish = "length"
                    if out.stopped:
                        break
                    if chunk is not None:
                        yield chunk
        except httpx.HTTPError as exc:
            raise GenerationError(_explain(exc, self.url)) from exc
        yield out.finish(finish, len(self.tokenize(prompt)))

    def close(self) -> None:
        self._client.close()
