"""Vision projectors in the Model tab, in a real browser: never listed as models, offered in the Vision
projector dropdown, named in the model's facts, saved per model, and downloaded with a vision model.

(The real load of a vision model with its projector is the llama.cpp loader's test.)
"""

from __future__ import annotations

import re

import pytest
import yaml
from playwright.sync_api import expect

from browserkit import choose, reload, wait_text
from harness import start_server, stop_server
from hubstub import HubStub
from projector_files import model_file, projector_file
from testdata import SMOLLM

pytestmark = pytest.mark.browser
PROJECTOR = "mmproj-x.gguf"
TEXT_MODEL = "tiny-text"
VLM_REPO = "test/tiny-vlm-GGUF"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A vision model's GGUF repository: two quantisations, each with its projector."""
    repo = tmp_path_factory.mktemp("vlm-repo")
    stub = HubStub().start()
    stub.add_repo(
        VLM_REPO,
        {
            "tiny-vlm-Q8_0.gguf": model_file(repo / "tiny-vlm-Q8_0.gguf"),
            "tiny-vlm-f16.gguf": model_file(repo / "tiny-vlm-f16.gguf"),
            "mmproj-tiny-vlm-Q8_0.gguf": projector_file(repo / "mmproj-tiny-vlm-Q8_0.gguf"),
            "mmproj-tiny-vlm-f16.gguf": projector_file(repo / "mmproj-tiny-vlm-f16.gguf"),
        },
    )
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, hub, smollm_path):
    """server.py (no model loaded) on a models folder with SmolLM2 and a projector next to it, and a
    second (text) model in a folder of its own."""
    root = tmp_path_factory.mktemp("vision")
    model_dir, user_dir = root / "models", root / "user"
    user_dir.mkdir()
    model_dir.mkdir()
    (model_dir / SMOLLM).symlink_to(smollm_path)
    projector_file(model_dir / PROJECTOR)
    model_file(model_dir / TEXT_MODEL / f"{TEXT_MODEL}.gguf")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", hub.url)
        srv = start_server(root, model_dir, user_dir)
    yield srv
    stop_server(srv)


def options_of(page, dropdown_id: str) -> list[str]:
    """The options a dropdown offers (opened, read, closed and left, so the next pick starts afresh)."""
    # another dropdown's list may still be closing (a pick just made): its options would be read too
    if page.get_by_role("option").count():
        page.keyboard.press("Escape")
        page.locator("body").click(position={"x": 1, "y": 1})
    expect(page.get_by_role("option")).to_have_count(0)
    box = page.locator(f"#{dropdown_id} input")
    box.click()
    page.get_by_role("option").first.wait_for()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    box.blur()
    expect(page.get_by_role("option")).to_have_count(0)
    return [o.strip().split("\n")[-1].strip() for o in options]  # without the selected one's check mark


def pick_model(page, name: str) -> None:
    """Pick ``name`` and wait for the answer (its facts, options and saved settings arrive together): a
    value set before then would be overwritten. The other model first, so the facts table changes."""
    other = TEXT_MODEL if name != TEXT_MODEL else SMOLLM
    for model in (other, name):
        choose(page, "model-dropdown", model)
        wait_text(page, "#model-info", model)


def vision_row(page) -> str:
    """The Vision row of the model's facts table."""
    row = page.locator("#model-info tr").filter(has=page.locator("td", has_text=re.compile(r"^Vision$")))
    return row.locator("td").nth(1).inner_text().strip()


def test_a_projector_is_offered_with_the_model_not_as_one(page, server):
    assert server.model_dir.joinpath(PROJECTOR).is_file()
    models = options_of(page, "model-dropdown")
    assert SMOLLM in models and TEXT_MODEL in models and PROJECTOR not in models

    pick_model(page, SMOLLM)
    projector_dd = page.locator("#opt-mmproj")
    expect(projector_dd).to_be_visible()
    expect(projector_dd.locator("input")).to_have_value("auto (next to the model)")
    assert options_of(page, "opt-mmproj") == ["auto (next to the model)", "none (no vision)", PROJECTOR]
    # not loaded yet: the facts say what loading it would give
    assert vision_row(page) == f"yes (projector {PROJECTOR})"

    choose(page, "opt-mmproj", "none (no vision)")
    wait_text(page, "#model-info", "no (projector switched off)")
    choose(page, "opt-mmproj", PROJECTOR)
    wait_text(page, "#model-info", f"yes (projector {PROJECTOR})")


def test_the_projector_choice_is_saved_per_model(page, server):
    pick_model(page, SMOLLM)
    choose(page, "opt-mmproj", "none (no vision)")
    page.locator("#model-save-settings").click()
    wait_text(page, "#model-settings-message", "Saved the settings")
    saved = yaml.safe_load((server.model_dir / "config-user.yaml").read_text())
    assert saved[SMOLLM]["mmproj"] == "none"

    reload(page)
    pick_model(page, TEXT_MODEL)
    expect(page.locator("#opt-mmproj input")).to_have_value("auto (next to the model)")  # not SmolLM2's choice
    assert vision_row(page) == "no"
    choose(page, "model-dropdown", SMOLLM)
    wait_text(page, "#model-settings-message", "Applied the settings")
    expect(page.locator("#opt-mmproj input")).to_have_value("none (no vision)")
    wait_text(page, "#model-info", "no (projector switched off)")


def test_a_vision_model_downloads_with_its_projector(page, server, hub):
    page.locator("#download-panel").get_by_text("Download from Hugging Face").click()
    page.locator("#download-repo textarea, #download-repo input").first.fill(VLM_REPO)
    page.locator("#download-list").click()
    wait_text(page, "#download-files", "mmproj-tiny-vlm-Q8_0.gguf")
    page.locator("#download-choice input").click()
    options = page.get_by_role("option").all_inner_texts()
    assert not any("mmproj" in o for o in options), options  # the projectors are not models to pick
    page.get_by_role("option", name=re.compile(r"Q8_0 · tiny-vlm-Q8_0\.gguf")).click()
    box = page.locator("#download-mmproj")
    expect(box).to_be_visible()
    expect(box).to_contain_text(
        re.compile(r"Also download the vision projector \(mmproj-tiny-vlm-Q8_0\.gguf, [\d.]+ [KMG]?B\)")
    )
    expect(box.locator("input[type=checkbox]")).to_be_checked()

    page.locator("#download-start").click()
    page.wait_for_selector("#download-result[data-state=done]")
    expect(page.locator("#model-dropdown input")).to_have_value("tiny-vlm-Q8_0")
    folder = server.model_dir / "tiny-vlm-Q8_0"
    assert sorted(p.name for p in folder.iterdir()) == ["mmproj-tiny-vlm-Q8_0.gguf", "tiny-vlm-Q8_0.gguf"]

    # the folder is a model of its own; its projector is found next to it
    reload(page)
    choose(page, "model-dropdown", "tiny-vlm-Q8_0")
    wait_text(page, "#model-info", "yes (projector mmproj-tiny-vlm-Q8_0.gguf)")
    assert "mmproj-tiny-vlm-Q8_0.gguf" in options_of(page, "opt-mmproj")
