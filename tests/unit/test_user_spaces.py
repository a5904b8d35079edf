"""Each user's own view of the app (Services.space): their chats, notebook, settings and library copies,
the shared model and libraries, and the admin's actions refused to everyone else - in the service, so
every caller (page, Gradio API, /v1) gets the same answer."""

from __future__ import annotations

import pytest
import yaml

from webui.accounts.passwords import hash_password
from webui.errors import PermissionDeniedError, WebUIError
from webui.params import LoadOptions, SamplingParams
from webui.services import Services
from webui.settings import Settings


def users_file(path, *users):
    entries = {name: {"password": hash_password("pw-" + name), "role": role} for name, role in users}
    path.write_text(yaml.safe_dump({"users": entries}), encoding="utf-8")
    return path


@pytest.fixture
def dirs(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("a.gguf", "b.gguf"):
        (models / name).write_bytes(b"GGUF ok")
    return tmp_path / "user", models


def build(dirs, loaders, **extra):
    user_dir, models = dirs
    user_dir.mkdir(exist_ok=True)
    settings = Settings(user_data_dir=user_dir, model_dir=models, load=LoadOptions(n_ctx=512), **extra)
    return Services.build(settings, loaders=loaders)


@pytest.fixture
def services(dirs, loaders):
    user_dir, _ = dirs
    user_dir.mkdir()
    users_file(user_dir / "users.yaml", ("alice", "admin"), ("bob", "user"), ("carol", "user"))
    return build(dirs, loaders)


def users(services):
    assert services.accounts is not None
    return (services.space(services.accounts.find(n)) for n in ("alice", "bob", "carol"))


def test_without_log_in_every_view_is_the_one_local_users(dirs, loaders):
    services = build(dirs, loaders)
    assert services.accounts is None
    assert services.space(None) is services
    assert services.is_admin


def test_the_main_admin_keeps_the_existing_folders_and_others_get_their_own(services, dirs):
    user_dir, _ = dirs
    alice, bob, carol = users(services)
    assert alice.chats.folder == services.chats.folder == user_dir / "logs" / "chats"
    assert bob.chats.folder == user_dir / "users" / "bob" / "logs" / "chats"
    assert bob.notebook_path == user_dir / "users" / "bob" / "logs" / "notebook.txt"
    assert bob.export_dir == user_dir / "users" / "bob" / "logs" / "exports"
    assert carol.chats.folder != bob.chats.folder
    # a user's view is the same folder however their name is typed at the log-in
    assert services.space(services.accounts.find("BOB")).chats.folder == bob.chats.folder


def test_a_users_chats_are_theirs_alone(services):
    alice, bob, carol = users(services)
    chat = bob.chats.new("Assistant")
    chat.title = "bob's secret"
    bob.chats.save(chat)
    assert [c.title for c in bob.chats.list("Assistant")] == ["bob's secret"]
    assert alice.chats.list("Assistant") == [] and carol.chats.list("Assistant") == []
    with pytest.raises(WebUIError):  # the id alone does not open it in another user's view
        carol.chats.load("Assistant", chat.id)
    # the chat search tool searches only the caller's own chats
    assert bob.tool_context.search_chats is not None and carol.tool_context.search_chats is not None
    assert carol.tool_context.search_chats("secret", 5) == []


def test_notebook_and_settings_are_per_user_and_survive_a_restart(services, dirs, loaders):
    alice, bob, _ = users(services)
    bob.save_notebook("bob writes")
    alice.save_notebook("alice writes")
    bob.remember(preset="Creative", params={"temperature": 1.3})
    assert services.space(services.accounts.find("bob")).settings.preset == "Creative"
    assert alice.settings.preset != "Creative" and services.settings.preset != "Creative"

    restarted = build(dirs, loaders)
    alice2, bob2, carol2 = users(restarted)
    assert bob2.load_notebook() == "bob writes" and alice2.load_notebook() == "alice writes"
    assert carol2.load_notebook() == ""
    assert bob2.settings.preset == "Creative" and bob2.initial_params().temperature == 1.3
    assert carol2.initial_params() == SamplingParams()


def test_server_settings_are_the_admins(services):
    alice, bob, _ = users(services)
    with pytest.raises(PermissionDeniedError):
        bob.remember(embedding_model="a.gguf")
    alice.remember(tools_allow_read_only=True)  # a user key of alice's own
    assert services.settings.tools_allow_read_only


def test_presets_are_a_shared_library_plus_own_copies(services, dirs):
    user_dir, _ = dirs
    alice, bob, carol = users(services)
    shared = set(services.presets.names())
    assert {"Default", "Creative"} <= shared
    assert set(bob.presets.names()) == shared

    bob.presets.save("Mine", SamplingParams(temperature=0.3))
    assert (user_dir / "users" / "bob" / "presets" / "Mine.yaml").is_file()
    assert "Mine" in bob.presets.names()
    assert "Mine" not in carol.presets.names() and "Mine" not in services.presets.names()

    # saving under a shared name makes bob's own copy, which wins for bob only
    bob.presets.save("Creative", SamplingParams(temperature=0.11))
    assert bob.presets.load("Creative").params.temperature == 0.11
    assert carol.presets.load("Creative").params.temperature != 0.11
    assert services.presets.load("Creative").params.temperature != 0.11

    with pytest.raises(PermissionDeniedError):
        carol.presets.delete("Creative")
    assert "Creative" in services.presets.names()
    bob.presets.delete("Mine")
    assert "Mine" not in bob.presets.names()
    # the admin edits the shared library itself
    alice.presets.save("Shared by alice", SamplingParams(temperature=0.5))
    assert "Shared by alice" in carol.presets.names()


def test_characters_are_shared_read_only_with_own_copies(services):
    _, bob, carol = users(services)
    names = services.characters.names()
    assert set(names) <= set(bob.characters.names())
    shared_one = next(n for n in names if n != "Assistant")
    with pytest.raises(PermissionDeniedError):
        bob.characters.delete(shared_one)
    assert bob.characters.load(shared_one).name


def test_admin_actions_are_refused_to_users_and_audited(services, dirs):
    user_dir, _ = dirs
    alice, bob, _ = users(services)
    for action in (
        lambda v: v.unload_model(),
        lambda v: v.delete_model("a.gguf"),
        lambda v: v.load_model("a.gguf", "fake"),
        lambda v: v.unload_embedding_model(),
        lambda v: v.require_admin("download models"),
    ):
        with pytest.raises(PermissionDeniedError) as refused:
            action(bob)
        assert refused.value.status_code == 403 and "admin" in refused.value.message
    assert (services.models.model_dir / "a.gguf").is_file()

    alice.load_model("a.gguf", "fake")
    assert services.models.current is not None and services.models.current.name == "a.gguf"
    alice.unload_model()
    log = [line for line in (user_dir / "logs" / "audit.jsonl").read_text().splitlines() if line]
    entries = [yaml.safe_load(line) for line in log]
    assert any(e["actor"] == "alice" and e["action"] == "unload the model" for e in entries)
    assert any(e["actor"] == "bob" and e["action"] == "refused" for e in entries)


def test_users_may_load_the_models_the_admin_allowed(dirs, loaders):
    user_dir, _ = dirs
    user_dir.mkdir()
    users_file(user_dir / "users.yaml", ("alice", "admin"), ("bob", "user"))
    services = build(dirs, loaders, user_models="b.gguf")
    bob = services.space(services.accounts.find("bob"))
    assert bob.models_for_user() == ["b.gguf"]
    bob.load_model("b.gguf", "fake")
    assert services.models.current.name == "b.gguf"
    assert bob.models_for_user() == ["b.gguf"]
    with pytest.raises(PermissionDeniedError):
        bob.load_model("a.gguf", "fake")


def test_limits_apply_to_users_not_admins(services):
    alice, bob, _ = users(services)
    assert bob.limits_for().max_queued == services.settings.user_max_queued == 2
    assert alice.limits_for().max_queued == 0


def test_a_users_read_file_folder_is_their_own(services, dirs):
    user_dir, _ = dirs
    _, bob, _ = users(services)
    assert bob.tool_context.allowed_folder == user_dir / "users" / "bob" / "files"


def test_turning_log_in_on_keeps_the_existing_data_for_the_first_admin(dirs, loaders):
    user_dir, _ = dirs
    before = build(dirs, loaders)
    chat = before.chats.new("Assistant")
    chat.title = "from before log-in"
    before.chats.save(chat)
    before.save_notebook("old notes")

    users_file(user_dir / "users.yaml", ("alice", "admin"), ("bob", "user"))
    after = build(dirs, loaders)
    alice, bob = (after.space(after.accounts.find(n)) for n in ("alice", "bob"))
    assert [c.title for c in alice.chats.list("Assistant")] == ["from before log-in"]
    assert alice.load_notebook() == "old notes"
    assert bob.chats.list("Assistant") == [] and bob.load_notebook() == ""


def test_a_users_generations_enter_the_queue_as_theirs_with_their_limits(dirs, loaders):
    user_dir, _ = dirs
    user_dir.mkdir()
    users_file(user_dir / "users.yaml", ("alice", "admin"), ("bob", "user"))
    services = build(dirs, loaders, user_max_tokens=10)
    alice, bob = (services.space(services.accounts.find(n)) for n in ("alice", "bob"))
    alice.load_model("a.gguf", "fake")
    job = bob.generator.submit("hello", SamplingParams(max_new_tokens=5))
    job.result()
    assert job.user == "bob" and job.stats is not None and job.stats.user == "bob"
    with pytest.raises(WebUIError) as refused:  # bob's cap, set by the admin
        bob.generator.submit("hello", SamplingParams(max_new_tokens=50))
    assert "10" in refused.value.message
    assert alice.generator.submit("hello", SamplingParams(max_new_tokens=50)).user == "alice"
    # the chat service of a user's view queues as that user too
    assert bob.chat_service.generator is bob.generator


def test_a_new_user_starts_from_the_defaults_not_the_first_admins_choices(services):
    alice, bob, _ = users(services)
    alice.remember(chat_setup={"system": "alice's private rules"}, preset="Creative", params={"temperature": 1.4})
    fresh = services.space(services.accounts.find("bob"))
    assert fresh.settings.chat_setup == {} and fresh.settings.preset == "Default"
    assert fresh.initial_params() == SamplingParams()


@pytest.mark.parametrize("odd", ["../alice", "..", "Alice/..", "ALICE ", "Ａｌｉｃｅ", "con", "a\\..\\alice"])
def test_a_name_made_to_look_like_anothers_never_reaches_their_folder(dirs, loaders, odd):
    user_dir, _ = dirs
    user_dir.mkdir()
    entries = {"alice": {"password": "x", "role": "admin"}, "bob": {"password": "y"}, odd: {"password": "z"}}
    (user_dir / "users.yaml").write_text(yaml.safe_dump({"users": entries}), encoding="utf-8")
    try:
        services = build(dirs, loaders)
    except WebUIError as exc:  # the same person as alice written another way: refused at start, by name
        assert "alice" in exc.message.lower()
        return
    view = services.space(services.accounts.find(odd))
    own = view.data_dir.resolve()
    assert (user_dir / "users").resolve() in own.parents
    assert own not in {services.data_dir.resolve(), services.space(services.accounts.find("bob")).data_dir.resolve()}
    view.save_notebook("odd")
    assert services.space(services.accounts.find("alice")).load_notebook() == ""


def test_language_and_chat_window_are_each_users_own(services, dirs, loaders):
    """The language a user chose and how many messages their chat box shows are theirs (issue 20): the
    window starts from the server's setting, the language from the browser's (never the admin's)."""
    alice, bob, _ = users(services)
    alice.remember(ui_language="zh", chat_window=5)  # the main admin's: the server's settings.yaml
    bob.remember(ui_language="ru", chat_window=12)
    _, bob, carol = users(services)  # (each event gets the view as it is now)
    assert (bob.settings.ui_language, bob.settings.chat_window) == ("ru", 12)
    assert (carol.settings.ui_language, carol.settings.chat_window) == ("auto", 5)  # the server's window
    restarted = build(dirs, loaders)
    _, bob2, carol2 = users(restarted)
    server_file = yaml.safe_load((dirs[0] / "settings.yaml").read_text(encoding="utf-8"))
    assert server_file["ui_language"] == "zh" and server_file["chat_window"] == 5  # read back at start
    assert (bob2.settings.ui_language, bob2.settings.chat_window) == ("ru", 12)
    assert carol2.settings.ui_language == "auto"
    saved = yaml.safe_load((dirs[0] / "users" / "bob" / "settings.yaml").read_text(encoding="utf-8"))
    assert saved["ui_language"] == "ru" and saved["chat_window"] == 12
