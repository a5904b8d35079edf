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

    def add_sentence(self, text: str, key: str, **fields: Any) -> None:
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

    def __init__(self, message: str | None = None) -> None:
        # Only the default text has a catalogue key (the API words its own for API users).
        key = None if message else "error.no_model"
        super().__init__(message or self.DEFAULT, key=key)


class PromptTooLongError(WebUIError):
    code = "context_length_exceeded"

    def __init__(self, prompt_tokens: int, n_ctx: int, *, at_least: bool = False) -> None:
        size = f"at least {prompt_tokens}" if at_least else str(prompt_tokens)
        super().__init__(
            f"The prompt is {size} tokens long but the model's context is {n_ctx} tokens. "
            "Shorten the text or load the model with a larger context (--ctx-size).",
            key="error.prompt_too_long",
            prompt_tokens=prompt_tokens,
            n_ctx=n_ctx,
        )
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


class InputTooLongError(WebUIError):
    """An input to the embedding model longer than the model takes (and ``truncate`` was not asked for)."""

    code = "context_length_exceeded"

    def __init__(self, index: int, tokens: int, n_ctx: int, model: str) -> None:
        super().__init__(
            f"Input {index} is {tokens} tokens long, but the embedding model {model} takes at most {n_ctx} "
            "tokens per input. Split the text into smaller chunks (RAG tools have a chunk size setting), "
            f'or send "truncate": true to embed only its first {n_ctx} tokens.'
        )
        self.index, self.tokens, self.n_ctx = index, tokens, n_ctx


class NoEmbeddingModelError(WebUIError):
    status_code = 404
    code = "no_embedding_model"

    DEFAULT = (
        "No embedding model is loaded. Start the server with --embedding-model NAME (a .gguf file or a "
        "sentence-transformers folder in the models folder), or load one in the Model tab (Embedding model)."
    )

    def __init__(self, message: str | None = None) -> None:
        key = None if message else "embeddings.error_none"
        super().__init__(message or self.DEFAULT, key=key)


class EmbeddingInputError(WebUIError):
    """Inputs the embedding model cannot take: empty, too many, too long together, token ids out of range."""

    code = "invalid_input"


class EmbeddingCancelled(WebUIError):
    """The client went away while its inputs were being embedded (the rest was not computed)."""

    code = "embedding_cancelled"


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
        super().__init__(
            f"The request is larger than this server accepts ({limit_bytes / 1_048_576:g} MB). "
            "Send less text (a prompt that long would not fit a model's context anyway).",
            key="error.request_too_large",
            mb=f"{limit_bytes / 1_048_576:g}",
        )
        self.limit_bytes = limit_bytes


class EmptyPromptError(WebUIError):
    """Nothing to continue: a model needs at least one token of prompt."""

    code = "empty_prompt"

    def __init__(self) -> None:
        super().__init__("The prompt is empty: type some text for the model to continue.", key="error.empty_prompt")


class DownloadCancelled(DownloadError):
    """The user pressed Cancel during a download (the part already downloaded is kept)."""

    code = "download_cancelled"


class ModelInfoError(ModelLoadError):
    """A model file whose header or config cannot be read (truncated, corrupt, not a model)."""

    code = "invalid_model_file"


class GrammarError(WebUIError):
    """A GBNF grammar that llama.cpp cannot parse."""

    code = "invalid_grammar"


class TemplateError(WebUIError):
    """A chat template that cannot be compiled or rendered (syntax or runtime error)."""

    status_code = 400
    code = "invalid_template"


class UnsafeTemplateError(TemplateError):
    """A chat template the sandbox or the work budget stopped."""

    code = "unsafe_template"


class ConversationRejectedError(TemplateError):
    """The template called ``raise_exception`` on purpose, e.g. "roles must alternate"."""

    code = "conversation_rejected"


class ChatNotFoundError(WebUIError):
    status_code = 404
    code = "chat_not_found"


class ChatBusyError(WebUIError):
    """A change to a chat's messages (an edit, Remove last, another version, Delete) while a reply is being
    written into it: the reply's next save would undo it, so it is refused and nothing changes."""

    status_code = 409
    code = "chat_busy"


class MessageNotFoundError(WebUIError):
    """A message number that the chat does not have (an edit, a version switch)."""

    status_code = 404
    code = "message_not_found"


class BranchRangeError(WebUIError):
    """A chat branched at a message number it does not have."""

    code = "branch_out_of_range"


class ChatIndexError(WebUIError):
    """The chat search index (a cache of the chat files) cannot be read or written."""

    status_code = 500
    code = "chat_index_unavailable"


class PresetNotFoundError(SettingsError):
    status_code = 404
    code = "preset_not_found"


class CharacterNotFoundError(SettingsError):
    status_code = 404
    code = "character_not_found"


class SaveError(WebUIError):
    """A file the user's work goes to (notebook, settings) could not be written."""

    status_code = 500
    code = "save_failed"

    @classmethod
    def writing(cls, exc: OSError, path: Any, message: str, key: str) -> SaveError:
        """The error for ``exc``, met writing ``path``: ``message`` is the English text of catalogue ``key``,
        with ``{path}`` and ``{detail}`` (the system's reason, e.g. "No space left on device")."""
        detail = exc.strerror or str(exc)
        return cls(message.format(path=path, detail=detail), key=key, path=str(path), detail=detail)


class CompareError(WebUIError):
    code = "invalid_comparison"


class UnauthorizedError(WebUIError):
    """A /v1 request without the API key the server was started with."""

    status_code = 401
    code = "invalid_api_key"

    def __init__(self) -> None:
        super().__init__(
            "Missing or wrong API key. Send 'Authorization: Bearer <key>' (or 'x-api-key: <key>'): the key given "
            "with --api-key, or your own from the server's admin (scripts/users.py add-key)."
        )


class PermissionDeniedError(WebUIError):
    """An action only the server's admin may take (load or delete a model, edit a shared library...)."""

    status_code = 403
    code = "permission_denied"


class QuotaError(WebUIError):
    """A user's share of the server is used up for now (too many requests queued): try again later."""

    status_code = 429
    code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, retry_after: float | None = None, key: str | None = None, **fields: Any
    ) -> None:
        super().__init__(message, key=key, **fields)
        #: seconds after which trying again is likely to succeed (the Retry-After header), if known
        self.retry_after = retry_after


class UserLimitError(WebUIError):
    """A request that asks for more than the server's admin lets one user ask for (whatever the queue holds)."""

    code = "over_user_limit"


class SchemaError(WebUIError):
    """A JSON schema (a tool's parameters, a ``response_format``) that is invalid or cannot be enforced."""

    code = "invalid_schema"


class AttachmentError(WebUIError):
    """A file or image that cannot be used (wrong type, too large, corrupt, no text...)."""

    code = "invalid_attachment"


class UnsupportedFeatureError(WebUIError):
    """A request field that would change the result and that this server or loader cannot honour."""

    code = "unsupported_feature"


class InvalidMessagesError(WebUIError):
    """Messages that do not make a conversation (a ``tool`` message without its call, bad parts)."""

    code = "invalid_messages"


class ChatActionError(WebUIError):
    """A chat action the open chat is not ready for (Regenerate with no reply yet, Send with nothing
    typed, answering a tool call twice...): nothing was changed."""

    code = "invalid_chat_action"
