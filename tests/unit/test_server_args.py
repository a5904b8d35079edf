"""The command line and the environment, derived from the settings models: one field, one setting."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

import server
import webui.settings
from testdata import PROJECT_DIR
from webui.errors import SettingsError
from webui.params import LoadOptions
from webui.settings import NOT_A_FLAG, LaunchOptions, Settings, build_parser, options, split_values, values_from_env

#: Every flag server.py had before it was derived from the models (text-generation-webui's names).
LEGACY_FLAGS = [
    "--model",
    "--default-model",
    "--model-menu",
    "--loader",
    "--model-dir",
    "--ctx-size",
    "--n-ctx",
    "--threads",
    "--gpu-layers",
    "--n-gpu-layers",
    "--n-batch",
    "--no-mmap",
    "--mlock",
    "--remote-url",
    "--remote-key",
    "--remote-model",
    "--dtype",
    "--device",
    "--trust-remote-code",
    "--listen",
    "--listen-host",
    "--listen-port",
    "--api",
    "--api-key",
    "--gradio-auth",
    "--gradio-auth-path",
    "--auto-launch",
    "--settings",
    "--user-data-dir",
    "--language",
    "--verbose",
]


def start(
    argv: list[str], env: dict[str, str] | None = None, settings_file: Path | None = None
) -> tuple[Settings, dict, LaunchOptions]:
    """What server.main builds from ``argv`` and ``env``: the settings, the overrides, the launch options."""
    overrides, launch = server.read_options(argv, env or {})
    return Settings.from_file(settings_file, overrides), overrides, launch


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_help_lists_every_flag_with_its_field_description():
    out = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "server.py"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in LEGACY_FLAGS:
        assert re.search(rf"{flag}\b", out), flag
    for option in options():
        assert squash(option.description) in squash(out), option.name
        assert option.env[0] in out
    assert "tabby_url" in out and "tabby_key" in out


def test_every_field_is_a_flag_unless_marked():
    """A setting is a field; its flag, env variable and help come from it (UI state is marked NOT_A_FLAG)."""
    by_scope = {(o.scope, o.name): o for o in options()}
    for scope, model in (("settings", Settings), ("load", LoadOptions), ("launch", LaunchOptions)):
        for name, field in model.model_fields.items():
            if field.json_schema_extra == NOT_A_FLAG:
                assert (scope, name) not in by_scope
                continue
            option = by_scope[(scope, name)]
            assert option.description == field.description and field.description, name
            assert option.env[0] == "WEBUI_" + name.upper()
    marked = {name for name, f in Settings.model_fields.items() if f.json_schema_extra == NOT_A_FLAG}
    assert marked == {
        "load",
        "preset",
        "params",
        "template_overrides",
        "chat_character",
        "chat_id",
        "chat_setup",
        "compare",
        "ui_language",
    }
    actions = {a.dest: a for a in build_parser()._actions}
    for option in options():
        assert actions[option.dest].help.startswith(option.description)
        assert option.env[0] in actions[option.dest].help
    flags = [f for a in build_parser()._actions for f in a.option_strings]
    assert len(flags) == len(set(flags))
    envs = [e for o in options() for e in o.env]
    assert len(envs) == len(set(envs))


def test_a_field_that_cannot_be_a_flag_must_be_marked(monkeypatch):
    class WithDict(BaseModel):
        extra_headers: dict[str, str] = {}

    monkeypatch.setattr(webui.settings, "_SCOPES", (("settings", WithDict),))
    with pytest.raises(TypeError, match="extra_headers"):
        options()


def test_legacy_flags_keep_their_meaning(tmp_path):
    auth = tmp_path / "auth.txt"
    argv = [
        "--model",
        "x.gguf",
        "--default-model",
        "d.gguf",
        "--model-menu",
        "--loader",
        "transformers",
        "--model-dir",
        str(tmp_path),
        "--n-ctx",
        "2048",
        "--threads",
        "3",
        "--n-gpu-layers",
        "-1",
        "--n-batch",
        "64",
        "--no-mmap",
        "--mlock",
        "--remote-url",
        "http://h:5000",
        "--remote-key",
        "k",
        "--remote-model",
        "m",
        "--dtype",
        "float16",
        "--device",
        "cuda:1",
        "--trust-remote-code",
        "--listen",
        "--listen-host",
        "10.0.0.2",
        "--listen-port",
        "9001",
        "--api",
        "--api-key",
        "s3",
        "--gradio-auth",
        "u:p",
        "--gradio-auth-path",
        str(auth),
        "--auto-launch",
        "--settings",
        str(tmp_path / "s.yaml"),
        "--user-data-dir",
        str(tmp_path),
        "--language",
        "ru",
        "--verbose",
    ]
    s, over, launch = start(argv)
    assert (s.model, s.loader, s.model_dir, s.user_data_dir) == ("x.gguf", "transformers", tmp_path, tmp_path)
    assert over["load"] == {
        "n_ctx": 2048,
        "threads": 3,
        "n_gpu_layers": -1,
        "n_batch": 64,
        "use_mmap": False,
        "use_mlock": True,
        "remote_url": "http://h:5000",
        "remote_key": "k",
        "remote_model": "m",
        "dtype": "float16",
        "device": "cuda:1",
        "trust_remote_code": True,
    }
    assert s.load == LoadOptions(**over["load"])
    assert (s.listen, s.host, s.listen_port, s.api, s.api_key) == (True, "10.0.0.2", 9001, True, "s3")
    assert (s.gradio_auth, s.gradio_auth_path, s.auto_launch, s.language) == ("u:p", auth, True, "ru")
    assert launch == LaunchOptions(settings=tmp_path / "s.yaml", default_model="d.gguf", model_menu=True, verbose=True)
    assert launch.settings_file(over) == tmp_path / "s.yaml"
    # the other spellings of the same settings
    _, over, _ = start(["--ctx-size", "1024", "--gpu-layers", "7"])
    assert over["load"] == {"n_ctx": 1024, "n_gpu_layers": 7}


def test_defaults_bind_localhost_only_and_nothing_is_explicit():
    s, over, launch = start([])
    assert (s.host, s.listen_port, s.load) == ("127.0.0.1", 7860, LoadOptions())
    assert over == {"load": {}} and launch == LaunchOptions()
    assert launch.settings_file(over) == PROJECT_DIR / "settings.yaml"
    assert start(["--listen"])[0].host == "0.0.0.0"


def test_bad_values_are_refused_when_parsed(capsys):
    for argv in (
        ["--listen-port", "70000"],
        ["--ctx-size", "big"],
        ["--device", "gpu"],
        ["--dtype", "int3"],
        ["--loader", "remote"],
        ["--language", "fr"],
    ):
        with pytest.raises(SystemExit) as exc:
            server.read_options(argv, {})
        assert exc.value.code == 2, argv
    assert "--listen-port" in capsys.readouterr().err


def test_precedence_defaults_file_env_command_line(tmp_path):
    settings_file = tmp_path / "s.yaml"
    settings_file.write_text("listen_port: 9000\nlisten: true\nchat_window: 5\nload:\n  n_ctx: 1024\n  threads: 3\n")
    env = {"WEBUI_N_CTX": "1536", "WEBUI_LISTEN_PORT": "9100", "WEBUI_API": "1", "WEBUI_N_BATCH": "128"}
    s, over, _ = start([], env, settings_file)
    assert (s.listen_port, s.listen, s.chat_window, s.api) == (9100, True, 5, True)
    assert (s.load.n_ctx, s.load.threads, s.load.n_batch) == (1536, 3, 128)
    assert over["load"] == {"n_ctx": 1536, "n_batch": 128}  # the file's load options are defaults, not explicit
    s, over, _ = start(["--ctx-size", "2048", "--no-listen", "--no-api", "--listen-port", "9200"], env, settings_file)
    assert (s.listen_port, s.listen, s.api, s.load.n_ctx, s.load.threads) == (9200, False, False, 2048, 3)
    assert over["load"] == {"n_ctx": 2048, "n_batch": 128}


def test_environment_variables(tmp_path):
    env = {
        "WEBUI_USER_DATA_DIR": str(tmp_path),
        "WEBUI_USE_MMAP": "false",
        "WEBUI_LANGUAGE": "zh",
        "WEBUI_VERBOSE": "yes",
        "WEBUI_DEFAULT_MODEL": "d.gguf",
        "WEBUI_MODEL_DIR": "",
        "WEBUI_MAX_BODY_MB": "2.5",
    }
    s, over, launch = start([], env)
    assert (s.user_data_dir, s.load.use_mmap, s.language, s.max_body_mb, s.model_dir) == (
        tmp_path,
        False,
        "zh",
        2.5,
        None,
    )  # an empty variable counts as unset
    assert launch.verbose and launch.default_model == "d.gguf"
    assert launch.settings_file(over) == tmp_path / "settings.yaml"
    # text-generation-webui's Tabby variables, under ours; without --model the remote server is the model
    s, over, _ = start([], {"tabby_url": "http://tabby:5000", "tabby_key": "tk"})
    assert (over["load"]["remote_url"], over["load"]["remote_key"], s.loader, s.model) == (
        "http://tabby:5000",
        "tk",
        "remote",
        "remote",
    )
    s, over, _ = start(
        ["--remote-model", "qwen"], {"tabby_url": "http://tabby:5000", "WEBUI_REMOTE_URL": "http://ours:5000"}
    )
    assert (over["load"]["remote_url"], s.model) == ("http://ours:5000", "qwen")
    assert start(["--model", "x.gguf"], {"tabby_url": "http://tabby:5000"})[0].loader is None


def test_a_bad_environment_variable_names_itself_but_not_its_value(capsys):
    with pytest.raises(SettingsError, match="WEBUI_LISTEN_PORT") as exc:
        values_from_env({"WEBUI_LISTEN_PORT": "123456789"})
    assert "123456789" not in exc.value.message
    with pytest.raises(SettingsError, match="WEBUI_LOADER"):
        values_from_env({"WEBUI_LOADER": "nonsense"})
    with pytest.raises(SystemExit) as stop:
        server.read_options([], {"WEBUI_N_CTX": "lots"})
    assert stop.value.code == 2 and "WEBUI_N_CTX" in capsys.readouterr().err


def test_model_given_as_a_path_sets_the_models_folder(tmp_path):
    f = tmp_path / "elsewhere" / "m.gguf"
    f.parent.mkdir()
    f.write_bytes(b"GGUF")
    over, _ = split_values({"settings.model": str(f)})
    assert over["model"] == "m.gguf" and over["model_dir"] == f.parent
    over, _ = split_values({"settings.model": "m.gguf"})
    assert over == {"model": "m.gguf", "load": {}}


def test_a_model_path_that_is_a_link_keeps_the_links_folder(tmp_path):
    """The folder of the link, not of its target: a projector or draft model linked beside it is found there."""
    target = tmp_path / "store" / "blob.gguf"
    target.parent.mkdir()
    target.write_bytes(b"GGUF")
    (tmp_path / "models").mkdir()
    link = tmp_path / "models" / "main.gguf"
    link.symlink_to(target)
    over, _ = split_values({"settings.model": str(link)})
    assert over["model"] == "main.gguf" and over["model_dir"] == tmp_path / "models"
