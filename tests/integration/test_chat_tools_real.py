"""The Chat tab's tool loop on the real SmolLM2 with forced calls (the "make the model call a tool"
switch): the shipped calculator and read_file, and an MCP server's tool over stdio and Streamable
HTTP - each called, its result saved, and the model's next reply written after it.

The services are the app's own (``Services.build`` on a user-data folder), so the shipped tool files,
the MCP servers from ``mcp.json`` and the toolbox are the ones a user gets.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from server_process import free_port
from webui.agents.types import ToolChoice
from webui.chat.prompt import Character, ChatOptions
from webui.services import Services
from webui.settings import Settings

pytestmark = pytest.mark.integration
SERVERS = Path(__file__).resolve().parents[1] / "mcp_servers"
GREEDY = {"do_sample": False, "max_tokens": 60, "seed": 1}


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.1)
    return value


@pytest.fixture(scope="module")
def http_server():
    import subprocess

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVERS / "calc_server.py"), "--http", str(port)])

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, "the MCP server listening", timeout=60)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def services(tmp_path_factory, smollm_path, http_server):
    root = tmp_path_factory.mktemp("tools")
    user = root / "user"
    user.mkdir()
    (user / "mcp.json").write_text(
        json.dumps(
            {
                "mcpServers": {
                    "calc": {"command": sys.executable, "args": [str(SERVERS / "calc_server.py")]},
                    "web": {"url": http_server},
                    "broken": {"command": str(root / "no-such-program")},
                    "dying": {"command": sys.executable, "args": [str(SERVERS / "dying_server.py")]},
                }
            }
        )
    )
    files = root / "notes"
    files.mkdir()
    (files / "plan.txt").write_text("The meeting is on Tuesday at 10.\n")
    (root / "secret.txt").write_text("do not read me\n")
    settings = Settings(user_data_dir=user, model_dir=smollm_path.parent, tools_folder=files, load={"n_ctx": 2048})
    services = Services.build(settings, user / "settings.yaml")
    services.load_model(smollm_path.name)
    wait_for(lambda: services.mcp.wait_connected(1) or None, "MCP servers connecting")
    yield services
    services.models.unload()
    services.close()


def forced_turn(services, chat, text: str, tools: list[str], action: str = "send"):
    turn = services.chat_service.turn(
        chat,
        action,
        text=text,
        character=Character("Assistant", ""),
        options=ChatOptions(system_prompt="You are a helpful assistant. Use the tools."),
        params=services.presets.load("Default").params.model_copy(update=GREEDY),
        tools=services.tools.specs(tools),
        tool_choice=ToolChoice("required") if action == "send" else None,
    )
    turn.result()
    return turn


def run_pending(services, chat) -> list[str]:
    results = []
    for call in chat.pending_calls():
        result = services.tools.run(call["function"]["name"], call["function"]["arguments"], threading.Event())
        services.chat_service.resolve_call(chat, call["id"], result)
        results.append(result.text)
    return results


def test_the_tool_list_shows_the_shipped_tools_the_servers_and_the_broken_one(services):
    listing = {t.name: t for t in services.tools.listing()}
    for name in ("calculate", "current_time", "read_file", "list_files", "search_chats", "calc__add", "web__add"):  # noqa: E501
        assert listing[name].spec is not None, listing[name]
    broken = [t for t in listing.values() if t.error and "broken" in t.name]
    assert broken and "no-such-program" in broken[0].error
    states = {s.name: s.state for s in services.mcp.status()}
    assert states == {"calc": "ready", "web": "ready", "broken": "failed", "dying": "ready"}


def test_calculate_round_trip(services):
    chat = services.chats.new("Assistant")
    first = forced_turn(services, chat, "What is 6 times 7? Use the calculator.", ["calculate"])
    (call,) = first.tool_calls
    assert call.name == "calculate"
    (result,) = run_pending(services, chat)
    assert result.strip() and "error" not in result.lower(), result
    second = forced_turn(services, chat, "", ["calculate"], action="respond")
    assert second.text.strip() and not chat.pending_calls()
    saved = services.chats.load("Assistant", chat.id)
    assert [m.role for m in saved.messages] == ["user", "assistant", "tool", "assistant"]
    assert saved.messages[2].content == result and saved.messages[2].status == "done"
    assert result in second.prompt.text  # the model saw the result


def test_read_file_reads_the_allowed_folder_only(services):
    chat = services.chats.new("Assistant")
    forced_turn(services, chat, 'Read the file plan.txt (call read_file with {"path": "plan.txt"}).', ["read_file"])
    (result,) = run_pending(services, chat)
    assert "Tuesday" in result, result
    outside = services.tools.run("read_file", json.dumps({"path": "../secret.txt"}), threading.Event())
    assert outside.error and "do not read me" not in outside.text


@pytest.mark.parametrize("server", ["calc", "web"])
def test_an_mcp_servers_tool_is_called_and_its_result_used(services, server):
    chat = services.chats.new("Assistant")
    first = forced_turn(services, chat, "Add 2 and 3 with the tool.", [f"{server}__add"])
    (call,) = first.tool_calls
    args = json.loads(call.arguments)
    assert set(args) == {"a", "b"} and all(isinstance(v, int) for v in args.values())
    (result,) = run_pending(services, chat)
    assert result.strip() == str(args["a"] + args["b"])
    second = forced_turn(services, chat, "", [f"{server}__add"], action="respond")
    assert result.strip() in second.prompt.text and second.text.strip()


def test_a_server_that_dies_leaves_an_error_result_and_the_chat_goes_on(services):
    chat = services.chats.new("Assistant")
    forced_turn(services, chat, "Say hello to Ada with the tool.", ["dying__hello"])
    (result,) = run_pending(services, chat)
    assert result.startswith("hello")
    wait_for(lambda: {s.name: s.state for s in services.mcp.status()}["dying"] == "failed", "the server's death seen")
    status = {s.name: s for s in services.mcp.status()}["dying"]
    assert "exited" in status.message
    assert "dying__hello" not in [t.name for t in services.tools.listing() if t.spec is not None]
    again = services.tools.run("dying__hello", json.dumps({"name": "Bo"}), threading.Event())
    assert again.error
    reply = forced_turn(services, chat, "", [], action="respond")  # the chat goes on without the tool
    assert reply.text.strip() and result in reply.prompt.text
