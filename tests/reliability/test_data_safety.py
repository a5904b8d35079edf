"""User data across an upgrade: older-format files load, nothing shipped overwrites the user's, damaged chats shown."""

from __future__ import annotations

import json

import pytest

from webui.errors import SettingsError
from webui.services import Services
from webui.settings import Settings


@pytest.fixture
def old_user_dir(tmp_path):
    """A user-data folder as text-generation-webui (or an older version of this app) left it."""
    u = tmp_path / "user"
    (u / "presets").mkdir(parents=True)
    (u / "presets" / "Default.yaml").write_text("temperature: 0.33\n")  # the user's edit of a shipped preset
    (u / "presets" / "Old tgwui.yaml").write_text(
        "do_sample: true\ntemperature: 0.7\ntop_p: 0.9\ntop_k: 20\nrepetition_penalty: 1.15\n"
        "max_new_tokens: 300\ntypical_p: 1\ntfs: 1\nepsilon_cutoff: 0\nmirostat_mode: 0\n"
    )
    (u / "characters").mkdir()
    (u / "characters" / "Old Bot.yaml").write_text(
        "name: Old Bot\ngreeting: Hello {{user}}!\ncontext: '{{char}} is a bot from 2023.'\n"
    )
    (u / "characters" / "V1 card.json").write_text(
        json.dumps(
            {
                "name": "Card One",
                "description": "an old card",
                "personality": "calm",
                "scenario": "a room",
                "first_mes": "Hi",
                "mes_example": "<START>\n{{user}}: hi\n{{char}}: hello",
            }
        )
    )
    chats = u / "logs" / "chats" / "Assistant"
    chats.mkdir(parents=True)
    (chats / "old-minimal.json").write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "old question"}, {"role": "assistant", "content": "old answer"}]}
        )
    )
    (chats / "tgwui.json").write_text(
        json.dumps({"internal": [["<|BEGIN-VISIBLE-CHAT|>", "Greeting"], ["Hi", "Hello"]], "visible": []})
    )
    (chats / "damaged.json").write_text('{"messages": [{"role": "user", "content": "cut off by a cra')
    (chats / "wrong-shape.json").write_text('{"messages": [1, 2, 3]}')
    (u / "settings.yaml").write_text("preset: Old tgwui\nchat_style: cai-chat\nmode: chat\nlisten_port: 7860\n")
    (u / "models").mkdir()
    (u / "models" / "config-user.yaml").write_text(".*smollm.*$:\n  ctx_size: 2048\n  gpu_layers: 0\n")
    return u


def build(u) -> Services:
    return Services.build(Settings.from_file(u / "settings.yaml", {"user_data_dir": u}), u / "settings.yaml")


def test_older_files_load_and_nothing_is_overwritten(old_user_dir):
    u = old_user_dir
    services = build(u)
    assert (u / "presets" / "Default.yaml").read_text() == "temperature: 0.33\n"
    preset = services.presets.load("Old tgwui")
    p = preset.params
    assert (p.temperature, p.top_p, p.top_k, p.repeat_penalty, p.max_tokens) == (0.7, 0.9, 20, 1.15, 300)
    assert preset.warning and "tfs" in preset.warning  # reported, kept on save
    services.presets.save("Old tgwui", p, preset.unknown)
    assert "tfs" in (u / "presets" / "Old tgwui.yaml").read_text()
    old = services.characters.load("Old Bot")
    assert old.fill(old.greeting, "Ada") == "Hello Ada!"
    assert "V1 card" in services.characters.names()
    assert "calm" in services.characters.load("V1 card").system_text("Ada")
    assert services.settings.preset == "Old tgwui"
    services.remember(preset="Default")
    assert "chat_style: cai-chat" in (u / "settings.yaml").read_text()  # keys we do not know are kept
    _, options = services.models.options_for("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert options.n_ctx == 2048


def test_damaged_chats_are_listed_by_name_and_never_overwritten(old_user_dir):
    u = old_user_dir
    chats = u / "logs" / "chats" / "Assistant"
    before = {p.name: p.read_bytes() for p in chats.iterdir()}
    services = build(u)
    infos = services.chats.list("Assistant")
    by_id = {i.id: i for i in infos}
    assert {"old-minimal", "tgwui", "damaged", "wrong-shape"} <= set(by_id)
    for bad in ("damaged", "wrong-shape"):
        assert by_id[bad].unreadable and f"{bad}.json" in by_id[bad].title
        with pytest.raises(SettingsError, match="left as it is"):
            services.chats.load("Assistant", bad)
    assert [i.unreadable is None for i in infos] == sorted((i.unreadable is None for i in infos), reverse=True)
    assert services.chats.load("Assistant", "old-minimal").messages[0].content == "old question"
    assert [m.content for m in services.chats.load("Assistant", "tgwui").messages] == ["Greeting", "Hi", "Hello"]
    # what the UI does on opening the chat list: open the newest readable one, start a new chat, rename another
    newest = services.chats.newest("Assistant")
    assert newest is not None and newest.id in ("old-minimal", "tgwui")
    fresh = services.chats.new("Assistant")
    services.chats.save(fresh)
    services.chats.rename("Assistant", "tgwui", "Renamed")
    for name in ("damaged.json", "wrong-shape.json"):
        assert (chats / name).read_bytes() == before[name]


# ---- a settings file broken by hand --------------------------------------------------------------------


def test_a_settings_file_broken_by_hand_is_set_aside_and_the_app_starts(tmp_path):
    """Not valid YAML: the start stopped with "error: settings.yaml is not valid YAML", so the one-command
    start failed until the student found the file. Now the file is kept aside (nothing lost), the app starts
    with the defaults, and the start and the Model tab say what happened and how to fix it."""
    import httpx

    from harness import make_dirs, start_server, stop_server
    from testdata import SMOLLM

    model_dir, user_dir = make_dirs(tmp_path)
    broken = 'preset: [unclosed\nchat_character: "Assistant\n'
    (user_dir / "settings.yaml").write_text(broken, encoding="utf-8")
    srv = start_server(tmp_path, model_dir, user_dir, "--model", SMOLLM)
    try:
        assert srv.health()["model"] == SMOLLM  # it started, and loaded the model
        (aside,) = user_dir.glob("settings.yaml.broken-*")
        assert aside.read_text(encoding="utf-8") == broken  # kept as it was
        assert not (user_dir / "settings.yaml").exists()
        page = httpx.get(srv.url + "/config", timeout=30).text  # (the Model tab's note is in the page's config)
        assert "could not be read" in page and aside.name in page and "at line 2" in page
        assert "could not be read" in srv.log.read_text(encoding="utf-8")
    finally:
        stop_server(srv)


def test_bad_values_in_the_settings_file_are_left_out_with_a_notice_and_the_rest_kept(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("preset: Creative\nlisten_port: lots\nload:\n  n_ctx: -5\n  threads: 2\n", encoding="utf-8")
    with pytest.raises(SettingsError):  # without repair (a tool reading the file): refused as before
        Settings.from_file(path, {"user_data_dir": tmp_path})
    settings = Settings.from_file(path, {"user_data_dir": tmp_path}, repair=True)
    assert (settings.preset, settings.load.threads) == ("Creative", 2)  # the good values are kept
    assert settings.listen_port == Settings().listen_port and settings.load.n_ctx == Settings().load.n_ctx
    assert [n.split(": ")[1] for n in settings.notices] == ["listen_port", "load.n_ctx"]
    assert path.read_text(encoding="utf-8").startswith("preset: Creative")  # the file is not changed
    # a bad value given at this start (command line, environment) still stops it
    with pytest.raises(SettingsError):
        Settings.from_file(path, {"user_data_dir": tmp_path, "listen_port": "x"}, repair=True)


def test_a_broken_settings_file_that_cannot_be_set_aside_stays_and_the_start_says_so(tmp_path, monkeypatch):
    import webui.settings as settings_module

    path = tmp_path / "settings.yaml"
    path.write_text("preset: [unclosed\n", encoding="utf-8")

    def read_only(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(settings_module.os, "replace", read_only)
    settings = Settings.from_file(path, {"user_data_dir": tmp_path}, repair=True)
    (notice,) = settings.notices
    assert "could not be set aside (Permission denied)" in notice
    assert path.read_text(encoding="utf-8") == "preset: [unclosed\n"
