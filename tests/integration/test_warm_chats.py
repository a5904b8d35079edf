"""Chats that reopen warm (SmolLM2, real llama.cpp, the real generation queue): when the queue goes idle,
the long prompt a slot holds is saved to disk; after a "restart" (a new model manager and queue on the same
folder) the chat's next turn loads it instead of reading the prompt again, and the reply is the very one a
cold start writes. A corrupt state file is ignored with a log line."""

from __future__ import annotations

import logging
from pathlib import Path

from harness import wait_until
from webui.generation.scheduler import Generator
from webui.models.manager import ModelManager
from webui.params import LoadOptions, SamplingParams

HISTORY = "".join(
    f"<|im_start|>user\nTell me fact number {i} about lighthouses.<|im_end|>\n"
    f"<|im_start|>assistant\nLighthouse fact {i}: keepers trimmed the wick every night and logged every "
    f"passing ship in a book.<|im_end|>\n"
    for i in range(12)
)
HISTORY += "<|im_start|>user\nAnd the last one?<|im_end|>\n<|im_start|>assistant\n"
NEW_TURN = "<|im_end|>\n<|im_start|>user\nAnd one more, please.<|im_end|>\n<|im_start|>assistant\n"
GREEDY = SamplingParams(max_tokens=24, do_sample=False)


def server(model: Path, warm: Path | None) -> Generator:
    models = ModelManager(model.parent, LoadOptions(n_ctx=1024, parallel=2))
    if warm is not None:
        models.warm_dir, models.warm_bytes = warm, 200_000_000
    models.load(model.name)
    return Generator(models)


def stop(gen: Generator) -> None:
    gen.models.unload()


def test_a_chat_continued_after_a_restart_loads_its_saved_state_and_replies_the_same(smollm_path, tmp_path):
    warm = tmp_path / "warm"
    first = server(smollm_path, warm)
    try:
        reply = first.submit(HISTORY, GREEDY).result()  # the chat so far; the queue then goes idle
        wait_until(lambda: list(warm.glob("*.kvstate")), "a saved state", timeout=60)
    finally:
        stop(first)

    next_turn = HISTORY + reply + NEW_TURN  # the chat continues with the reply in it, as a chat does
    cold = server(smollm_path, None)
    try:
        expected = cold.submit(next_turn, GREEDY).result()
        read_cold = cold.models.current.backend.engine.counters["evaluated"]
    finally:
        stop(cold)

    again = server(smollm_path, warm)  # the restart
    try:
        assert again.submit(next_turn, GREEDY).result() == expected
        counters = again.models.current.backend.engine.counters
        assert counters["restored"] >= 250, counters  # the history came from disk
        assert counters["evaluated"] < read_cold / 4, (counters, read_cold)
    finally:
        stop(again)


def test_a_corrupt_state_file_is_ignored_with_a_log_line(smollm_path, tmp_path, caplog):
    warm = tmp_path / "warm"
    first = server(smollm_path, warm)
    try:
        reply = first.submit(HISTORY, GREEDY).result()
        (saved,) = wait_until(lambda: list(warm.glob("*.kvstate")), "a saved state", timeout=60)
    finally:
        stop(first)
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2] + b"\0" * 1000)
    again = server(smollm_path, warm)
    try:
        with caplog.at_level(logging.WARNING):
            assert again.submit(HISTORY + reply + NEW_TURN, GREEDY).result()
        assert again.models.current.backend.engine.counters["restored"] == 0
        assert any("state" in r.getMessage().lower() for r in caplog.records if r.levelno >= logging.WARNING)
    finally:
        stop(again)
