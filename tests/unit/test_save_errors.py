"""A notebook or settings save that fails is a typed error the page shows, never only a log line."""

from __future__ import annotations

import pytest

from webui.errors import SaveError
from webui.services import Services
from webui.settings import Settings
from webui.ui.common import save_or_warn


@pytest.fixture
def services(tmp_path, loaders):
    return Services.build(
        Settings(user_data_dir=tmp_path / "user"), tmp_path / "user" / "settings.yaml", loaders=loaders
    )


def test_notebook_that_cannot_be_written_raises_save_error(services):
    services.save_notebook("first draft")
    assert services.load_notebook() == "first draft"
    services.notebook_path.unlink()
    services.notebook_path.mkdir()  # a folder where the file should be: no write can replace it
    with pytest.raises(SaveError, match="Could not save the notebook") as info:
        services.save_notebook("second draft")
    assert (info.value.code, info.value.status_code, info.value.key) == ("save_failed", 500, "error.save_notebook")
    assert isinstance(info.value.__cause__, OSError) and services.notebook_path.is_dir()
    assert not [p for p in services.notebook_path.parent.iterdir() if p.name != "notebook.txt"]  # no temp left


def test_settings_that_cannot_be_written_raise_save_error_and_still_hold(services):
    services.settings_path.parent.mkdir(parents=True, exist_ok=True)
    services.settings_path.mkdir()
    with pytest.raises(SaveError, match="Could not save your settings"):
        services.remember(preset="Chat")
    assert services.settings.preset == "Chat"  # the choice holds for this run


def test_hand_broken_settings_file_is_left_alone_and_reported(services):
    services.settings_path.parent.mkdir(parents=True, exist_ok=True)
    services.settings_path.write_text("preset: [unclosed\n")
    with pytest.raises(SaveError, match="not valid YAML"):
        services.remember(preset="Chat")
    assert services.settings_path.read_text() == "preset: [unclosed\n"


def test_the_page_shows_a_failed_save_as_a_warning_in_its_language(services):
    services.notebook_path.parent.mkdir(parents=True, exist_ok=True)
    services.notebook_path.mkdir()
    # outside a browser event gr.Warning is a Python warning; in the page it is a toast
    with pytest.warns(UserWarning, match="Could not save the notebook"):
        assert save_or_warn(lambda: services.save_notebook("text"), "en") is False
    with pytest.warns(UserWarning, match="Не удалось сохранить блокнот"):
        assert save_or_warn(lambda: services.save_notebook("text"), "ru") is False
    services.notebook_path.rmdir()
    assert save_or_warn(lambda: services.save_notebook("text"), "en") is True
    assert services.load_notebook() == "text"
