"""Typed errors of the web UI.

Domain code raises these; only the edges convert them (``gr.Error`` in the UI,
OpenAI-style JSON in the API). Every error carries a message written for the
person using the app: what went wrong and, where we know it, what to do.

The message is English. An error the UI shows often also carries a catalogue
``key`` and the ``fields`` of its text, so the UI can show it in the page's
language (``webui/ui/i18n.py``); this module knows nothing of languages.
"""
from __future__ import annotations

from typing import Any


class WebUIError(Exception):
    """Base of every error we raise on purpose."""

    #: HTTP status the API edge uses for this error.
    status_code: int = 400
    #: Short machine-readable code (OpenAI's ``error.code``).
    code: str = "webui_error"

    def __init__(self, message: str, *, key: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        #: catalogue key of ``message`` and the values of its ``{fields}`` (None: English only)
        self.key = key
        self.fields = fields
        #: sentences added after the message, as (catalogue key, fields)
        self.notes: list[tuple[str, dict[str, Any]]] = []

    def add_note(self, text: str, key: str, **fields: Any) -> None:
        """Append a sentence (``text`` in English) to the message."""
        self.message = f"{self.message} {text}"
        self.args = (self.message,)
        self.notes.append((key, fields))

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class InvalidNameError(WebUIError):
    code = "invalid_name"


class ModelNotFoundError(WebUIError):
    status_code = 404
    code = "model_not_found"


class ModelLoadError(WebUIError):
    """A model file or folder could not be loaded (corrupt, wrong format, missing deps)."""

    status_code = 400
    code = "model_load_failed"


class UnknownLoaderError(WebUIError):
    code = "unknown_loader"


class NoModelLoadedError(WebUIError):
    status_code = 503
    code = "no_model_loaded"

    DEFAULT = "No model is loaded. Pick one in the Model tab and press Load."

    def __init__(self, message: str = DEFAULT) -> None:
        super().__init__(message, key="error.no_model" if message == self.DEFAULT else None)


class PromptTooLongError(WebUIError):
    code = "context_length_exceeded"

    def __init__(self, prompt_tokens: int, n_ctx: int) -> None:
        super().__init__(
            f"The prompt is {prompt_tokens} tokens long but the model's context is {n_ctx} tokens. "
            "Shorten the text or load the model with a larger context (--ctx-size).",
            key="error.prompt_too_long", prompt_tokens=prompt_tokens, n_ctx=n_ctx)
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


class GenerationError(WebUIError):
    status_code = 500
    code = "generation_failed"


class SettingsError(WebUIError):
    code = "invalid_settings"


class DownloadError(WebUIError):
    code = "download_failed"


class CardError(WebUIError):
    """A character card, lorebook or Modelfile that cannot be read (not a card, broken, too big)."""

    code = "invalid_card"


class RequestTooLargeError(WebUIError):
    """A request body over the server's limit (refused before it is read, with HTTP 413)."""

    status_code = 413
    code = "request_too_large"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"The request is larger than this server accepts ({limit_bytes / 1_048_576:g} MB). "
                         "Send less text (a prompt that long would not fit a model's context anyway).",
                         key="error.request_too_large", mb=f"{limit_bytes / 1_048_576:g}")
        self.limit_bytes = limit_bytes


class EmptyPromptError(WebUIError):
    """Nothing to continue: a model needs at least one token of prompt."""

    code = "empty_prompt"

    def __init__(self) -> None:
        super().__init__("The prompt is empty: type some text for the model to continue.", key="error.empty_prompt")
