"""Chat turns on the real SmolLM2: memory across turns, Stop and a kill never lose the history."""

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from itertools import pairwise

import pytest

from harness import smollm_generator
from testdata import PROJECT_DIR, SMOLLM
from webui.chat.history import ChatStore
from webui.chat.prompt import Character, ChatOptions, Persona
from webui.chat.service import ChatService
from webui.params import SamplingParams

pytestmark = pytest.mark.integration
GREEDY = SamplingParams(do_sample=False, max_tokens=48)


@pytest.fixture(scope="module")
def service(smollm_path, tmp_path_factory):
    for gen in smollm_generator(smollm_path, tmp_path_factory, n_ctx=2048):
        yield ChatService(gen, ChatStore(tmp_path_factory.mktemp("chats")), model_template)


def model_template(loaded):
    """The model's own chat template (what the app chooses for it), picked on the generation thread."""
    from webui.templates.chat_template import InstructionTemplateStore, choose_template

    return choose_template(
        loaded.backend.chat_template, None, InstructionTemplateStore(PROJECT_DIR / "instruction-templates")
    )


def turn(service, chat, action, text="", params=GREEDY, **kw):
    return list(
        service.turn(
            chat,
            action,
            text=text,
            character=Character("Assistant", ""),
            options=ChatOptions(persona=Persona("User")),
            params=params,
            **kw,
        )
    )


def test_second_answer_uses_the_first(service):
    chat = service.store.new("Assistant")
    # (What SmolLM2-135M reliably does with greedy decoding; "What is my name?" it gets wrong.)
    turn(service, chat, "send", "My name is Ada.")
    out = turn(service, chat, "send", "Repeat my name.")
    assert "Ada" in out[-1]
    saved = service.store.load("Assistant", chat.id)
    assert len(saved.messages) == 4 and "Ada" in saved.messages[3].content
    assert saved.messages[3].stats["model"] == SMOLLM and saved.messages[3].stats["tokens"] > 0


def test_truncation_length_keeps_the_system_prompt_and_a_stable_prefix(service):
    """truncation_length (an imported Modelfile's num_ctx sets it) goes through the chat budget.

    The 2048-token context is larger than truncation_length: whole old turns are dropped to fit
    300 tokens, the system prompt stays first, the loader cuts nothing from the front, and between
    two drops each prompt starts with the previous one (llama.cpp reuses its cached prefix).
    """
    chat = service.store.new("Assistant")
    options = ChatOptions(
        system_prompt="RULES: you are a pirate. Always answer like a pirate.", persona=Persona("User")
    )
    params = SamplingParams(do_sample=False, max_tokens=24, truncation_length=300)
    prompts = []
    for i in range(10):
        running = service.turn(
            chat,
            "send",
            text=f"Tell me one fact about the number {i}, please.",
            character=Character("Assistant", ""),
            options=options,
            params=params,
        )
        list(running)
        prompt = running.prompt
        prompts.append(prompt)
        assert running.stats.prompt_cut == 0 and running.stats.prompt_tokens == prompt.tokens <= 300
        assert "RULES: you are a pirate." in prompt.text.split("Tell me one fact")[0]
    assert prompts[-1].dropped > 0 and prompts[-1].n_ctx == 300
    stable = [(a, b) for a, b in pairwise(prompts) if a.dropped == b.dropped]
    assert stable and all(b.text.startswith(a.text) for a, b in stable)


def test_stop_mid_stream_leaves_a_valid_file_with_the_partial_reply(service):
    chat = service.store.new("Assistant")
    cancel = threading.Event()
    seen = []
    for text in service.turn(
        chat,
        "send",
        text="Write a long story about a dragon.",
        character=Character(),
        options=ChatOptions(),
        params=SamplingParams(max_tokens=400, seed=1),
        cancel=cancel,
    ):
        seen.append(text)
        if len(seen) == 10:
            cancel.set()
    saved = json.loads((service.store.folder / "Assistant" / f"{chat.id}.json").read_text())
    reply = saved["messages"][-1]
    assert reply["role"] == "assistant" and reply["content"] and reply["stats"]["finish_reason"] == "cancelled"
    assert reply["content"] == seen[-1].rstrip()


def test_kill_mid_stream_keeps_a_valid_file_with_the_user_message(smollm_path, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(PROJECT_DIR)!r})
        from pathlib import Path
        from webui.characters.character import Character
        from webui.chat.prompt import ChatOptions
        from webui.chat.service import ChatService
        from webui.generation.scheduler import Generator
        from webui.chat.history import ChatStore
        from webui.params import LoadOptions
        from webui.models.manager import ModelManager
        from webui.params import SamplingParams
        from webui.templates.chat_template import ChatTemplate
        models = ModelManager(Path({str(smollm_path.parent)!r}), LoadOptions(n_ctx=1024))
        models.load({SMOLLM!r})
        tpl = ChatTemplate.compile(models.current.backend.chat_template, "model")
        svc = ChatService(Generator(models), ChatStore(Path({str(tmp_path)!r})), lambda loaded: (tpl, ""))
        svc.SAVE_EVERY = 0.05
        chat = svc.store.new("Assistant")
        for i, _ in enumerate(svc.turn(chat, "send", text="Tell me a very long story.", character=Character(),
                                       options=ChatOptions(), template=tpl,
                                       params=SamplingParams(max_tokens=2000, seed=1))):
            if i == 5:
                print("STREAMING", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "STREAMING"
    time.sleep(0.3)  # let it stream (and save) a little more; the kill lands at a random point
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    files = [f for f in (tmp_path / "Assistant").glob("*.json") if not f.name.startswith(".")]
    assert len(files) == 1  # a temp file of an interrupted save is never taken for a chat
    assert [c.id for c in ChatStore(tmp_path).list("Assistant")] == [files[0].stem]
    data = json.loads(files[0].read_text())
    assert data["messages"][0] == {**data["messages"][0], "role": "user", "content": "Tell me a very long story."}
