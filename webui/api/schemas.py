"""Request bodies of the /v1 API (they are also what /openapi.json publishes).

A generation request accepts every ``SamplingParams`` field by its own name (same ranges and
descriptions), plus ``preset`` (a preset file's values, overridden by the fields sent). Fields
that OpenAI clients send and we do not use (``n``, ``user``, ``logprobs``...) are ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from webui.params import SamplingParams


class GenerationRequest(SamplingParams):
    """What every generation route takes: sampling fields, a preset, streaming or not."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    model: str | None = Field(None, description="Any name; the loaded model answers.")
    stream: bool = False
    preset: str | None = Field(None, description="Start from this preset's values.")


class CompletionRequest(GenerationRequest):
    prompt: str | list[str]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | None = ""


class ChatCompletionRequest(GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    character: str | None = Field(
        None,
        description="A character from characters/: its context becomes the "
        "system prompt (unless the messages bring their own).",
    )
    system_prompt: str | None = Field(
        None, description="A system prompt to send first (unless the messages bring their own)."
    )


class LoadModelRequest(BaseModel):
    model_name: str
    loader: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
