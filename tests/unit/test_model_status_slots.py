"""The Model tab's status says how many requests the loaded model decodes together, or that its loader
takes them one at a time (the transformers and remote loaders)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from fakes import FakeBackend
from webui.loaders.base import Capabilities
from webui.ui.model_tab import status_text


class SlotBackend(FakeBackend):
    def parallel(self):
        return object()


def services_with(backend) -> SimpleNamespace:
    loaded = SimpleNamespace(name="m.gguf", loader="x", backend=backend, load_seconds=0.1)
    return SimpleNamespace(models=SimpleNamespace(current=loaded))


def test_a_sequential_loader_says_one_request_at_a_time():
    backend = object.__new__(FakeBackend)
    backend.n_ctx, backend.chat_template, backend.metadata = 512, "t", {}
    assert "One request at a time" in status_text(services_with(backend), "en")


def test_a_model_with_slots_says_how_many():
    backend = object.__new__(SlotBackend)
    backend.n_ctx, backend.chat_template, backend.metadata = 512, "t", {}
    backend.capabilities = dataclasses.replace(Capabilities(), parallel_sequences=4)
    text = status_text(services_with(backend), "en")
    assert "Requests decoded together: 4 (slots of 512 tokens each)" in text
    assert "One request at a time" not in text
