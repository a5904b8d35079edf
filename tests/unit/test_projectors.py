"""Vision projectors (mmproj) are never models: the model list and the API leave them out, the Model tab
finds the one that goes with a model, and a hub download brings the projector matching the quantisation.

The GGUF files here are real (``tests/projector_files.py`` writes them with the ``gguf`` package, a few
KB each); the hub is the loopback stand-in of ``tests/hubstub.py``.
"""

from __future__ import annotations

import fastapi
import pytest
from fastapi.testclient import TestClient

from hubstub import HubStub
from projector_files import model_file, projector_file
from webui.api import create_api, install_error_handlers
from webui.downloads.hub import RemoteFile, Source, download, list_files, matching_projector, plan_choices
from webui.errors import ModelInfoError
from webui.loaders.mtmd import find_projectors, resolve_projector
from webui.models.facts import model_facts, model_gguf, model_ggufs
from webui.models.manager import ModelManager
from webui.services import Services
from webui.settings import Settings
from webui.ui.model_vision import projector_choices, vision_fact


# ----- telling projectors from models ------------------------------------------------------------
def test_a_model_folder_never_takes_its_projector_for_the_model(tmp_path):
    folder = tmp_path / "qwen-vl"
    model = model_file(folder / "qwen-vl-Q4_K_M.gguf")
    projector = projector_file(folder / "mmproj-qwen-vl-f16.gguf")  # sorts first ("m" < "q")
    assert model_ggufs(folder) == [model]
    facts = model_facts(folder)
    assert (facts.name, facts.architecture, facts.file_size) == ("qwen-vl", "llama", model.stat().st_size)
    assert find_projectors(folder) == find_projectors(model) == [projector]


def test_a_projector_read_as_a_model_is_a_clear_error(tmp_path):
    projector = projector_file(tmp_path / "mmproj-x.gguf")
    with pytest.raises(ModelInfoError, match=r"mmproj-x.gguf is a vision projector \(mmproj\), not a model") as info:
        model_facts(projector)
    assert info.value.key == "error.projector_not_a_model"
    only = tmp_path / "only-projector"
    projector_file(only / "mmproj-y.gguf")
    with pytest.raises(ModelInfoError, match="holds only a vision projector"):
        model_facts(only)


def test_the_model_list_and_the_api_leave_projectors_out(tmp_path, loaders):
    models_dir = tmp_path / "models"
    model_file(models_dir / "SmolVLM-256M-Instruct-Q8_0.gguf")
    projector_file(models_dir / "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf")
    projector_file(models_dir / "clip-encoder.gguf", typed=False)  # no mmproj in its name
    model_file(models_dir / "vlm-folder" / "vlm-Q4_0.gguf")
    projector_file(models_dir / "vlm-folder" / "mmproj-vlm-f16.gguf")
    projector_file(models_dir / "projector-only" / "mmproj-z.gguf")
    manager = ModelManager(models_dir, loaders=loaders)
    assert manager.list_models() == ["SmolVLM-256M-Instruct-Q8_0.gguf", "vlm-folder"]
    assert manager.path_of("vlm-folder").name == "vlm-Q4_0.gguf"
    with pytest.raises(ModelInfoError, match="is a vision projector"):
        manager.path_of("mmproj-SmolVLM-256M-Instruct-Q8_0.gguf")

    services = Services.build(Settings(user_data_dir=tmp_path, api=True), tmp_path / "settings.yaml", loaders=loaders)
    app = fastapi.FastAPI()
    install_error_handlers(app)
    app.include_router(create_api(services), prefix="/v1")
    client = TestClient(app)
    listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert listed == ["SmolVLM-256M-Instruct-Q8_0.gguf", "vlm-folder"]
    assert client.get("/v1/models/mmproj-SmolVLM-256M-Instruct-Q8_0.gguf").status_code == 404


# ----- the Model tab: which projector a model would load with ------------------------------------
def test_the_vision_row_says_what_a_load_would_do(tmp_path, loaders):
    models_dir = tmp_path / "models"
    model_file(models_dir / "SmolVLM-256M-Instruct-Q8_0.gguf")
    projector_file(models_dir / "mmproj-SmolVLM-256M-Instruct-f16.gguf")
    q8 = projector_file(models_dir / "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf")
    model_file(models_dir / "text-model.gguf")
    projector_file(models_dir / "mmproj-x.gguf")  # named like no model here
    services = Services.build(Settings(user_data_dir=tmp_path), tmp_path / "settings.yaml", loaders=loaders)

    def row(name: str, mmproj: str | None) -> tuple[str | None, int]:
        return vision_fact(services, name, services.models.facts(name), mmproj, "en")

    vlm = "SmolVLM-256M-Instruct-Q8_0.gguf"
    # auto: the projector named like the model, in its precision; its size counts in the RAM estimate
    assert row(vlm, "auto") == ("yes (projector mmproj-SmolVLM-256M-Instruct-Q8_0.gguf)", q8.stat().st_size)
    assert row(vlm, "none") == ("no (projector switched off)", 0)
    assert (
        row(vlm, "mmproj-SmolVLM-256M-Instruct-f16.gguf")[0] == "yes (projector mmproj-SmolVLM-256M-Instruct-f16.gguf)"
    )
    text, _ = row(vlm, "mmproj-gone.gguf")
    assert text is not None and text.startswith("⚠") and "mmproj-gone.gguf" in text
    # several models share the folder and no projector is named like this one: auto loads none, and says why
    assert row("text-model.gguf", "auto")[0] == (
        "no: several models share this folder and no projector is named like this one; pick one under Vision projector"
    )
    assert [value for _, value in projector_choices(services, vlm, "auto", "en")] == [
        "auto",
        "none",
        "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf",
        "mmproj-SmolVLM-256M-Instruct-f16.gguf",
        "mmproj-x.gguf",
    ]
    assert projector_choices(services, vlm, "mmproj-gone.gguf", "ru")[:2] == [
        ("авто (рядом с моделью)", "auto"),
        ("нет (без зрения)", "none"),
    ]
    assert projector_choices(services, vlm, "mmproj-gone.gguf", "en")[-1] == ("mmproj-gone.gguf",) * 2


def test_a_model_alone_in_its_folder_takes_the_projector_there(tmp_path, loaders):
    models_dir = tmp_path / "models"
    model_file(models_dir / "vlm" / "vlm-Q4_K_M.gguf")
    projector_file(models_dir / "vlm" / "mmproj-F16.gguf")
    model_file(models_dir / "plain" / "plain.gguf")
    services = Services.build(Settings(user_data_dir=tmp_path), tmp_path / "settings.yaml", loaders=loaders)
    assert (
        vision_fact(services, "vlm", services.models.facts("vlm"), None, "en")[0] == "yes (projector mmproj-F16.gguf)"
    )
    assert vision_fact(services, "plain", services.models.facts("plain"), None, "en")[0] == "no"
    assert model_gguf(models_dir / "vlm") == models_dir / "vlm" / "vlm-Q4_K_M.gguf"
    (models_dir / "empty").mkdir()
    assert model_gguf(models_dir / "empty") is None


# ----- hub downloads -------------------------------------------------------------------------
VLM_FILES = [
    RemoteFile("README.md", 100),
    RemoteFile("SmolVLM-256M-Instruct-Q8_0.gguf", 175_000_000),
    RemoteFile("SmolVLM-256M-Instruct-f16.gguf", 328_000_000),
    RemoteFile("mmproj-SmolVLM-256M-Instruct-Q8_0.gguf", 104_000_000),
    RemoteFile("mmproj-SmolVLM-256M-Instruct-f16.gguf", 190_000_000),
]


@pytest.mark.parametrize(
    "model, projectors, expected",
    [
        # the model's own quantisation, else F16, else the first
        ("SmolVLM-Q8_0.gguf", ["mmproj-SmolVLM-f16.gguf", "mmproj-SmolVLM-Q8_0.gguf"], "mmproj-SmolVLM-Q8_0.gguf"),
        ("SmolVLM-Q4_K_M.gguf", ["mmproj-SmolVLM-Q8_0.gguf", "mmproj-SmolVLM-f16.gguf"], "mmproj-SmolVLM-f16.gguf"),
        ("gemma-3-4b-it-Q4_K_M.gguf", ["mmproj-BF16.gguf", "mmproj-F16.gguf", "mmproj-F32.gguf"], "mmproj-F16.gguf"),
        ("m-Q4_K_M.gguf", ["mmproj-b.gguf", "mmproj-a.gguf"], "mmproj-a.gguf"),
        # next to the model first, else at the top of the repository; none there: none
        ("Q4/m-Q4_0.gguf", ["mmproj-m-Q4_0.gguf", "Q4/mmproj-m-f16.gguf"], "Q4/mmproj-m-f16.gguf"),
        ("Q4/m-Q4_0.gguf", ["mmproj-m-f32.gguf", "Q8/mmproj-m-Q4_0.gguf"], "mmproj-m-f32.gguf"),
        ("m-Q4_0.gguf", ["Q8/mmproj-m-Q4_0.gguf"], None),
        ("m.gguf", [], None),
    ],
)
def test_matching_projector(model, projectors, expected):
    found = matching_projector(model, [RemoteFile(p, 1) for p in projectors])
    assert (found.path if found else None) == expected


def test_projectors_are_not_offered_as_models_but_with_the_matching_quantisation():
    listing = plan_choices(Source("ggml-org/SmolVLM-256M-Instruct-GGUF"), VLM_FILES)
    assert [c.key for c in listing.choices] == ["SmolVLM-256M-Instruct-Q8_0.gguf", "SmolVLM-256M-Instruct-f16.gguf"]
    q8, f16 = listing.choices
    assert q8.projector is not None and q8.projector.path == "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf"
    assert f16.projector is not None and f16.projector.path == "mmproj-SmolVLM-256M-Instruct-f16.gguf"
    # on by default: both files, in one folder named after the model
    assert q8.projector_included and q8.is_folder and q8.target == "SmolVLM-256M-Instruct-Q8_0"
    assert [f.path for f in q8.files] == ["SmolVLM-256M-Instruct-Q8_0.gguf", "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf"]
    assert q8.size == 175_000_000 + 104_000_000
    assert "vision model" in listing.note and listing.note.key == "download.note_pick_vision"
    # unticked: the model alone, as a plain file (and ticked again: as before)
    alone = q8.with_projector(False)
    assert (alone.target, alone.is_folder, alone.size, alone.projector_included) == (
        "SmolVLM-256M-Instruct-Q8_0.gguf",
        False,
        175_000_000,
        False,
    )
    assert alone.with_projector(True) == q8


def test_projector_choice_in_subfolders_and_repos_without_one():
    files = [
        RemoteFile("Q4_K_M/vlm-Q4_K_M-00001-of-00002.gguf", 10),
        RemoteFile("Q4_K_M/vlm-Q4_K_M-00002-of-00002.gguf", 10),
        RemoteFile("vlm-Q8_0.gguf", 30),
        RemoteFile("mmproj-BF16.gguf", 5),
        RemoteFile("mmproj-F16.gguf", 5),
        RemoteFile("mmproj-F32.gguf", 9),
    ]
    split, q8 = plan_choices(Source("unsloth/vlm-GGUF"), files).choices
    # nothing next to the split parts: the top of the repository, F16 preferred
    assert split.projector == q8.projector == RemoteFile("mmproj-F16.gguf", 5)
    assert (split.target, split.is_folder, len(split.files)) == ("vlm-Q4_K_M", True, 3)
    assert (split.with_projector(False).target, split.with_projector(False).is_folder) == ("vlm-Q4_K_M", True)
    text_only = plan_choices(Source("a/b"), [RemoteFile("m-Q4_K_M.gguf", 10)])
    (choice,) = text_only.choices
    assert choice.projector is None and choice.with_projector(True) == choice and not choice.is_folder
    # a link to one model file still brings its projector; a link to the projector alone is a plain file
    (one,) = plan_choices(Source("a/b", filename="SmolVLM-256M-Instruct-f16.gguf"), VLM_FILES).choices
    assert one.projector is not None and one.projector.path == "mmproj-SmolVLM-256M-Instruct-f16.gguf"
    only = plan_choices(Source("a/b", filename="mmproj-SmolVLM-256M-Instruct-f16.gguf"), VLM_FILES)
    assert only.kind == "other" and only.choices[0].target == "mmproj-SmolVLM-256M-Instruct-f16.gguf"


@pytest.fixture
def vlm_hub(tmp_path):
    repo = tmp_path / "repo"
    stub = HubStub().start()
    stub.add_repo(
        "test/tiny-vlm-GGUF",
        {
            "tiny-vlm-Q8_0.gguf": model_file(repo / "tiny-vlm-Q8_0.gguf"),
            "tiny-vlm-f16.gguf": model_file(repo / "tiny-vlm-f16.gguf"),
            "mmproj-tiny-vlm-Q8_0.gguf": projector_file(repo / "mmproj-tiny-vlm-Q8_0.gguf"),
            "mmproj-tiny-vlm-f16.gguf": projector_file(repo / "mmproj-tiny-vlm-f16.gguf"),
            "README.md": b"# tiny\n",
        },
    )
    yield stub
    stub.stop()


def test_a_download_puts_the_projector_next_to_the_model(tmp_path, vlm_hub, monkeypatch, loaders):
    monkeypatch.setenv("HF_ENDPOINT", vlm_hub.url)
    listing = list_files(Source("test/tiny-vlm-GGUF", endpoint=vlm_hub.url))
    q8 = next(c for c in listing.choices if c.key == "tiny-vlm-Q8_0.gguf")
    models_dir = tmp_path / "models"
    path = download(listing, q8, models_dir)
    assert path == models_dir / "tiny-vlm-Q8_0" and path.is_dir()
    assert sorted(p.name for p in path.iterdir()) == ["mmproj-tiny-vlm-Q8_0.gguf", "tiny-vlm-Q8_0.gguf"]
    assert resolve_projector(path / "tiny-vlm-Q8_0.gguf", "") == (path / "mmproj-tiny-vlm-Q8_0.gguf", "")
    # without the projector: the model alone, as before
    f16 = next(c for c in listing.choices if c.key == "tiny-vlm-f16.gguf").with_projector(False)
    assert download(listing, f16, models_dir) == models_dir / "tiny-vlm-f16.gguf"
    fetched = [
        r["path"].rsplit("/", 1)[-1] for r in vlm_hub.requests if r["method"] == "GET" and "resolve" in r["path"]
    ]
    assert "mmproj-tiny-vlm-f16.gguf" not in fetched
    assert ModelManager(models_dir, loaders=loaders).list_models() == ["tiny-vlm-f16.gguf", "tiny-vlm-Q8_0"]


def test_importing_a_projector_alone_is_refused(tmp_path):
    outside = tmp_path / "downloads"
    outside.mkdir()
    projector = projector_file(outside / "mmproj-x-f16.gguf")
    models = tmp_path / "models"
    models.mkdir()
    with pytest.raises(ModelInfoError, match="is a vision projector"):
        ModelManager(models).import_model(projector)
    assert list(models.iterdir()) == []
