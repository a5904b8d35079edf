"""The Sampling tab's boxes keep what was typed (Services.save_box / load_box), as the Notebook does."""

from __future__ import annotations

import pytest

from fakes import FakeBackend
from webui.errors import SaveError
from webui.loaders import LoaderRegistry
from webui.services import SAVED_BOXES, Services
from webui.settings import Settings


@pytest.fixture
def services(tmp_path):
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    built = Services.build(
        Settings(user_data_dir=user_dir), user_dir / "settings.yaml", loaders=LoaderRegistry([FakeBackend])
    )
    yield built
    built.close()


def test_each_box_keeps_its_own_text_across_a_new_services(services, tmp_path):
    assert [services.load_box(b) for b in SAVED_BOXES] == ["", "", ""]
    services.save_box("sampling-prompt", "The capital of France is")
    services.save_box("perplexity-text", "Два абзаца.\n\n東京 🙂")
    again = Services.build(
        Settings(user_data_dir=tmp_path / "user"),
        tmp_path / "user" / "settings.yaml",
        loaders=LoaderRegistry([FakeBackend]),
    )
    try:
        assert again.load_box("sampling-prompt") == "The capital of France is"
        assert again.load_box("perplexity-text") == "Два абзаца.\n\n東京 🙂"
    finally:
        again.close()


def test_only_the_known_boxes_have_a_file(services):
    with pytest.raises(ValueError):
        services.box_path("../settings")


def test_a_box_that_cannot_be_saved_says_so(services):
    folder = services.box_path("perplexity-text").parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("a file where the folder goes")  # (a read-only folder does not stop root)
    with pytest.raises(SaveError, match="Your text stays in the box; copy it somewhere safe"):
        services.save_box("perplexity-text", "new")
    assert services.load_box("perplexity-text") == ""


def test_an_unreadable_box_file_starts_the_box_empty(services):
    path = services.box_path("sampling-prompt")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe\x00bad")
    assert services.load_box("sampling-prompt") == ""
