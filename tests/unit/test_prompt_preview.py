"""The Chat tab's "Show prompt" shows what the next turn would send: the same budget as a turn
(``truncation_length`` below the model's context drops old turns whole, and room is kept for the reply),
the system prompt always in. Scripted fake loader (one token per character)."""

from __future__ import annotations

from webui.chat.history import Message
from webui.chat.prompt import ChatOptions
from webui.params import SamplingParams
from webui.services import Services
from webui.settings import Settings
from webui.ui.chat_page import ChatPage

SYSTEM = "Answer like a pirate."
OLD = "the oldest question about apples " * 3


def page_with_long_chat(tmp_path, loaders) -> tuple[ChatPage, tuple[str, str]]:
    user = tmp_path / "user"
    (user / "models").mkdir(parents=True)
    (user / "models" / "m.gguf").write_bytes(b"GGUF ok")
    services = Services.build(Settings(user_data_dir=user), user / "settings.yaml", loaders=loaders)
    services.load_model("m.gguf", "fake", explicit={"n_ctx": 2000})
    page = ChatPage(services)
    chat = page.fresh_chat("Assistant")
    chat.messages += [Message("user", OLD), Message("assistant", "Arr, apples.")]
    for i in range(6):
        chat.messages += [Message("user", f"question {i} " + "x" * 60), Message("assistant", f"answer {i}")]
    services.chats.save(chat)
    return page, page.remember_open(chat)


def preview(page: ChatPage, state) -> str:
    prompt = page.preview_prompt(state, "Assistant", ChatOptions(system_prompt=SYSTEM), None)
    assert prompt is not None
    return prompt.text


def test_show_prompt_uses_the_turns_budget(tmp_path, loaders):
    page, state = page_with_long_chat(tmp_path, loaders)
    whole = preview(page, state)
    assert OLD in whole and SYSTEM in whole and "question 5" in whole

    # truncation_length below the context: the oldest turns go, whole; the system prompt stays
    page.services.remember(params=SamplingParams(truncation_length=400, max_tokens=50).model_dump())
    cut = preview(page, state)
    assert OLD not in cut and SYSTEM in cut and "question 5" in cut
    assert len(cut) <= 400 - 50  # one token per character on the fake loader: it fits with the reply's room


def test_show_prompt_without_a_model_says_so(tmp_path, loaders):
    user = tmp_path / "user"
    services = Services.build(Settings(user_data_dir=user), user / "settings.yaml", loaders=loaders)
    page = ChatPage(services)
    assert page.preview_prompt(None, "Assistant", ChatOptions(), None) is None
