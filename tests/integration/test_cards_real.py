"""A lorebook on a real SmolLM2 chat: the fired entry is in the prompt the model gets."""

import json

import pytest

from cardkit import lorebook, png_card, v2_card
from harness import smollm_generator
from testdata import PROJECT_DIR
from webui.characters.store import CharacterStore
from webui.chat.history import ChatStore
from webui.chat.prompt import ChatOptions, Persona
from webui.chat.service import ChatService, greeting_message
from webui.params import SamplingParams
from webui.templates.chat_template import InstructionTemplateStore, choose_template

pytestmark = pytest.mark.integration
GREEDY = SamplingParams(do_sample=False, max_tokens=30)
SECRET = "The password of the lighthouse is PINEAPPLE."


@pytest.fixture(scope="module")
def service(smollm_path, tmp_path_factory):
    for gen in smollm_generator(smollm_path, tmp_path_factory, n_ctx=2048):
        templates = InstructionTemplateStore(PROJECT_DIR / "instruction-templates")
        yield ChatService(
            gen,
            ChatStore(tmp_path_factory.mktemp("chats")),
            lambda loaded: choose_template(loaded.backend.chat_template, None, templates),
        )


def test_lorebook_entry_fires_on_a_real_chat(service, tmp_path):
    book = lorebook(
        {"keys": ["password"], "content": SECRET, "insertion_order": 5},
        {"keys": ["kraken"], "content": "The kraken sleeps under the rock."},
        scan_depth=2,
    )
    card = tmp_path / "aria.png"
    card.write_bytes(png_card(v2_card(character_book=book, system_prompt="", post_history_instructions="")))
    store = CharacterStore(tmp_path / "characters")
    character = store.load(store.import_file(card).file_name)
    backend = service.generator.models.current.backend
    templates = InstructionTemplateStore(PROJECT_DIR / "instruction-templates")
    template, _ = choose_template(backend.chat_template, None, templates)
    chat = service.store.new("Aria")
    chat.messages.append(greeting_message(character, "Bob"))
    options = ChatOptions(persona=Persona("Bob"))

    first = service.turn(
        chat, "send", text="Hello, how are you?", character=character, options=options, template=template, params=GREEDY
    )
    reply = list(first)[-1]
    assert reply and SECRET not in first.prompt.text and first.prompt.lore.fired == []

    second = service.turn(
        chat,
        "send",
        text="What is the password of the lighthouse?",
        character=character,
        options=options,
        template=template,
        params=GREEDY,
    )
    reply = list(second)[-1]
    prompt = second.prompt
    assert SECRET in prompt.text and "kraken" not in prompt.text
    assert prompt.text.index(SECRET) < prompt.text.index("Aria is a lighthouse keeper.")
    assert "key 'password'" in prompt.lore.summary()
    assert prompt.text.startswith("<|im_start|>system\n")  # SmolLM2's own template, entry in the system turn
    saved = json.loads((service.store.folder / "Aria" / f"{chat.id}.json").read_text())
    assert saved["messages"][0]["content"].startswith("Welcome in, Bob.") and saved["messages"][-1]["content"]
    # (SmolLM2-135M does not reliably repeat the password back, so the reply is only checked to exist.)
    assert reply.strip() and prompt.tokens > 0
