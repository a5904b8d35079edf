"""Chat templates of the real test models: our sandboxed render matches transformers'."""

from __future__ import annotations

from pathlib import Path

import pytest

from testdata import GEMMA, MODELS_DIR, PROJECT_DIR, SMOLLM
from webui.templates.chat_template import ChatTemplate, InstructionTemplateStore, choose_template

pytestmark = pytest.mark.integration

CONVERSATIONS = {
    "user only": [{"role": "user", "content": "What is the capital of France?"}],
    "system and user": [
        {"role": "system", "content": "You are a geography teacher."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "several turns": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Name a prime number.\nJust one."},
    ],
    "no system, several turns": [
        {"role": "user", "content": "Bonjour"},
        {"role": "assistant", "content": "Bonjour ! 😊"},
        {"role": "user", "content": '<b>tags</b> & "quotes" {{ not jinja }}'},
    ],
}


def _gguf_metadata(path: Path) -> dict[str, str]:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        return dict(llm.metadata)
    finally:
        llm.close()


def _gguf_chat_template(path: Path) -> str | None:
    return _gguf_metadata(path).get("tokenizer.chat_template")


@pytest.fixture(scope="module")
def smollm_template(smollm_path) -> str:
    source = _gguf_chat_template(MODELS_DIR / SMOLLM)
    assert source, "SmolLM2's GGUF should carry a chat template"
    return source


@pytest.fixture(scope="module")
def tokenizer(hf_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_checkpoint)


@pytest.fixture
def store() -> InstructionTemplateStore:
    return InstructionTemplateStore(PROJECT_DIR / "instruction-templates")


def test_the_gguf_and_the_checkpoint_carry_the_same_template(smollm_template, tokenizer):
    assert tokenizer.chat_template == smollm_template


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("messages", CONVERSATIONS.values(), ids=CONVERSATIONS.keys())
def test_smollm_template_renders_like_transformers(smollm_template, tokenizer, messages, add_generation_prompt):
    ours = ChatTemplate.compile(smollm_template, "SmolLM2").render(
        messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
    )
    theirs = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert ours == theirs


def test_smollm_uses_its_own_template(smollm_template, tokenizer, store):
    template, note = choose_template(smollm_template, None, store)
    assert note == "Using the model's own chat template."
    messages = CONVERSATIONS["user only"]
    assert template.render(messages) == tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True
    )


def test_gemma_base_model_has_no_template_and_falls_back(gemma_path, store):
    metadata = _gguf_metadata(MODELS_DIR / GEMMA)
    assert not metadata.get("tokenizer.chat_template")
    # without the file's metadata: ChatML; with it, the family's template (gemma3 -> Gemma)
    template, note = choose_template(None, None, store)
    assert template.name == "ChatML" and note.startswith("Base model: not trained to chat")
    family, family_note = choose_template(None, None, store, metadata)
    assert family.name == "Gemma" and family_note.endswith("Using instruction template Gemma.")
    assert "<end_of_turn>" in family.stop_strings
    assert template.render(CONVERSATIONS["user only"]) == (
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
