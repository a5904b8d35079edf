"""The per-model tool-call format: saved in config-user.yaml, read by the chat request's prepare step."""

from __future__ import annotations

import logging

import pytest

from webui.agents.engine import ChatRequest, chat_prepare
from webui.agents.formats import FORMAT_NAMES
from webui.agents.types import ToolSpec
from webui.models.model_settings import ModelSettings
from webui.params import SamplingParams
from webui.services import Services
from webui.settings import Settings

MODEL = "m.bin"
WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture
def services(tmp_path, loaders):
    user = tmp_path / "user"
    (user / "models").mkdir(parents=True)
    (user / "models" / MODEL).write_bytes(b"weights")
    return Services.build(Settings(user_data_dir=user), user / "settings.yaml", loaders=loaders)


def load(services: Services, **saved) -> None:
    services.models.save_model_settings(MODEL, ModelSettings(loader="fake", **saved))
    services.load_model(MODEL, explicit={})


def prepared_format(services: Services, tool_format: str | None = None) -> str | None:
    """The format the prepare step picks for a tools request, as the API routes build it."""
    request = ChatRequest([{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER], tool_format=tool_format)
    prepare = chat_prepare(services.template_for, request, services.tool_format_for)
    plan = prepare(services.models.current, SamplingParams(max_tokens=4)).detail
    return plan.format.name if plan.format is not None else None


def test_saved_format_is_stored_and_read_back(services):
    services.models.save_model_settings(MODEL, ModelSettings(loader="fake", tool_format="mistral"))
    assert "tool_format: mistral" in services.models.settings_file.read_text()
    assert services.models.model_settings(MODEL).tool_format == "mistral"
    # saving "auto" writes no key at all
    services.models.save_model_settings(MODEL, ModelSettings(loader="fake"))
    assert "tool_format" not in services.models.settings_file.read_text()


def test_saved_format_reaches_the_prepare_step(services):
    load(services, tool_format="mistral")
    loaded = services.models.current
    assert services.tool_format_for(loaded) == "mistral"
    assert prepared_format(services) == "mistral"
    # a request that names a format still wins over the model's setting
    assert prepared_format(services, tool_format="llama3") == "llama3"


def test_without_a_saved_format_the_template_decides(services):
    load(services)
    assert services.tool_format_for(services.models.current) is None
    # the fake model has no template: it chats with ChatML, whose calls are Hermes-style <tool_call> blocks
    assert services.detected_tool_format(MODEL) == "hermes"
    assert prepared_format(services) == "hermes"
    # "auto" names a format only for the model that is loaded
    assert services.detected_tool_format("other.gguf") is None


def test_unknown_saved_name_falls_back_to_auto_with_a_log_line(services, caplog):
    # a hand-edited file: a typo in the name
    services.models.settings_file.write_text(f"{MODEL}:\n  loader: fake\n  tool_format: mistrall\n")
    services.load_model(MODEL, explicit={})
    with caplog.at_level(logging.WARNING, logger="webui.services"):
        assert services.tool_format_for(services.models.current) is None
        assert prepared_format(services) == "hermes"
    assert "mistrall" in caplog.text and MODEL in caplog.text and "chat template" in caplog.text


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_every_format_name_can_be_chosen(services, name):
    load(services, tool_format=name)
    assert prepared_format(services) == name


def test_model_tab_shows_the_unknown_name_and_auto(services):
    """The Model tab's reading of a saved choice: a known one selected, an unknown one shown as Auto with a note."""
    from webui.ui.model_tab import AUTO_FORMAT, tool_format_state

    load(services, tool_format="mistral")
    update, note = tool_format_state(services, MODEL, services.models.model_settings(MODEL), "en")
    assert update["value"] == "mistral" and note == ""
    assert update["choices"][0] == ("Auto (from the chat template: hermes)", AUTO_FORMAT)
    assert [value for _, value in update["choices"][1:]] == list(FORMAT_NAMES)

    update, note = tool_format_state(services, MODEL, ModelSettings(tool_format="mistrall"), "en")
    assert update["value"] == AUTO_FORMAT
    assert "mistrall" in note and "unknown" in note and "mistral," in note
    # a model that is not loaded: Auto cannot say yet what the template will give
    update, _ = tool_format_state(services, "other.gguf", ModelSettings(), "ru")
    assert update["choices"][0] == ("Авто (по шаблону чата)", AUTO_FORMAT)
