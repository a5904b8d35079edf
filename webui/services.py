"""The services one running app is made of, built once and passed to the UI and the API."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from webui.accounts.audit import AuditLog
from webui.accounts.keys import ApiKeys, load_api_keys
from webui.accounts.users import Accounts, User, load_accounts
from webui.agents.formats import detect_format, format_by_name
from webui.characters.store import CharacterStore, ImportResult
from webui.chat.history import ChatStore
from webui.chat.prompt import Template
from webui.chat.search import ChatIndex
from webui.chat.service import ChatService
from webui.downloads.hub import Choice, DownloadJob, DownloadManager, Listing
from webui.errors import GrammarError, NoModelLoadedError, PermissionDeniedError, SaveError, SettingsError, WebUIError
from webui.generation.cancel import Cancels
from webui.generation.limits import UserLimits
from webui.generation.scheduler import GenerationJob, Generator
from webui.loaders import LoaderRegistry
from webui.models.embeddings import EmbeddingModels
from webui.models.manager import LoadedModel, ModelManager, Progress
from webui.params import LoadOptions, SamplingParams
from webui.presets import PresetStore
from webui.settings import PROJECT_DIR, Settings, remember, set_aside_notice
from webui.storage import Layered, atomic_write_text, in_order, read_yaml
from webui.templates.chat_template import ChatTemplate, InstructionTemplateStore, choose_template
from webui.tools.files import FileTools, ToolContext
from webui.tools.mcp import McpServers
from webui.tools.toolbox import ToolBox
from webui.tools.types import ToolInfo, ToolResult

log = logging.getLogger(__name__)

SHIPPED_FOLDERS = ("presets", "grammars", "characters", "instruction-templates", "tools")

#: What each user chooses for themselves (with log-in, kept in users/<name>/settings.yaml); every other
#: remembered setting is the server's (the admin's: model, load options, embedding model, tools folder).
USER_KEYS = frozenset(
    {"preset", "params", "chat_character", "chat_id", "template_overrides", "chat_setup", "compare"}
    | {"tools_allow_read_only", "ui_language", "chat_window"}
)
#: The user's own choices that start from the server's setting (not the default) until they make one.
FROM_SERVER = frozenset({"chat_window"})

#: The shared libraries an admin edits in place (attribute of the services, the kind the audit log names).
LIBRARIES = (("presets", "preset"), ("characters", "character"), ("instruction_templates", "instruction template"))


#: Boxes other than the Notebook whose text is kept on disk as it is typed (Services.save_box): the
#: Chat tab's message being written, the Sampling tab's two.
SAVED_BOXES = ("chat-draft", "sampling-prompt", "perplexity-text")


def _save_text(path: Path, text: str | None, what: str, key: str) -> None:
    """Write a box's text atomically, unless a request that came in later has already written it.

    Raises :class:`SaveError` (``key``, saying it could not save ``what``) if it cannot be written: the box
    still has the text."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with in_order(path, ["text"]) as fresh:
            if fresh:
                atomic_write_text(path, text or "")
    except OSError as exc:
        message = f"Could not save {what} to {{path}}: {{detail}}. Your text stays in the box; copy it somewhere safe."
        raise SaveError.writing(exc, path, message, key) from exc


@dataclass
class Services:
    settings: Settings
    models: ModelManager
    generator: Generator
    presets: PresetStore
    #: Where the UI's choices are remembered (settings.yaml or --settings FILE).
    settings_path: Path
    chats: ChatStore
    #: Search over the chats: an SQLite index derived from the chat files (never the source of truth).
    chat_index: ChatIndex
    characters: CharacterStore
    instruction_templates: InstructionTemplateStore
    chat_service: ChatService
    downloads: DownloadManager
    #: The cancel events of every page's (and API request's) running generation.
    cancels: Cancels
    #: The tools the Chat tab offers the model: tool files and MCP servers' tools.
    tools: ToolBox
    mcp: McpServers
    #: What the shipped tools read: the folder read_file may read (settable while running), chat search.
    tool_context: ToolContext
    #: The embedding model for /v1/embeddings: a model of its own beside the chat model (or none).
    embeddings: EmbeddingModels
    #: Who may log in and their roles (None: no log-in; the app is one local user's, as before accounts).
    accounts: Accounts | None = None
    #: API keys and the users they stand for (none configured: /v1 is open, or --api-key only).
    api_keys: ApiKeys | None = None
    #: Append-only record of log-ins and admin actions (logs/audit.jsonl, rotated).
    audit: AuditLog | None = None
    #: Whose view of the app this is (see :meth:`space`); None: the server's own (no log-in, or start-up).
    user: User | None = None
    #: The server-wide services this user's view was made from; None: this is the server-wide one.
    shared: Services | None = None
    #: The user's own data folder (chats, notebook, exports, settings); None: the user-data folder.
    own_dir: Path | None = None
    #: The user's own choices (USER_KEYS) laid over the server's settings in every view.
    overlay: dict[str, Any] = field(default_factory=dict, repr=False)
    #: What opening this user's view had to do about their own settings file broken by hand (their Model
    #: tab shows it, as the server's own file's notices).
    own_notices: tuple[str, ...] = ()
    _spaces: dict[str, Services] = field(default_factory=dict, repr=False)
    _spaces_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(
        cls, settings: Settings, settings_path: Path | None = None, loaders: LoaderRegistry | None = None
    ) -> Services:
        user_dir = Path(settings.user_data_dir)
        for folder in SHIPPED_FOLDERS:
            target = user_dir / folder
            if not target.exists() and target.resolve() != (PROJECT_DIR / folder).resolve():
                # A new user-data folder starts with the shipped presets and grammars.
                shutil.copytree(PROJECT_DIR / folder, target)
        presets_dir = user_dir / "presets"
        models = ModelManager(settings.models_path, settings.load, loaders=loaders)
        models.warm_dir, models.warm_bytes = user_dir / "cache" / "warm-states", settings.warm_cache_mb * 1_000_000
        models.budget_bytes = settings.models_budget_mb * 1_000_000
        models.ttl_seconds, models.load_on_demand = float(settings.model_ttl), settings.load_on_demand
        generator = Generator(models)
        chats = ChatStore(user_dir / "logs" / "chats")
        templates = InstructionTemplateStore(user_dir / "instruction-templates")

        def template_for(loaded: LoadedModel) -> tuple[ChatTemplate, str]:
            # Runs on the generation thread, for the model that is about to answer.
            return choose_template(
                loaded.backend.chat_template,
                template_override(settings, models, loaded.name),
                templates,
                loaded.backend.metadata,
            )

        chat_index = ChatIndex(chats.folder / ".index.sqlite", chats)
        context = ToolContext(
            allowed_folder=Path(settings.tools_folder) if settings.tools_folder else None,
            search_chats=lambda query, limit: search_all_chats(chats, chat_index, query, limit),
        )
        mcp = McpServers(user_dir / "mcp.json")
        mcp.start()  # returns at once: each server connects in the background
        toolbox = ToolBox(
            [FileTools(user_dir / "tools", context), McpTools(mcp)],
            timeout=settings.tool_timeout,
            max_result_chars=settings.tool_result_max_chars,
        )
        services = cls(
            settings=settings,
            models=models,
            generator=generator,
            presets=PresetStore(presets_dir),
            settings_path=Path(settings_path) if settings_path else user_dir / "settings.yaml",
            chats=chats,
            chat_index=chat_index,
            characters=CharacterStore(user_dir / "characters"),
            instruction_templates=templates,
            chat_service=ChatService(
                generator, chats, template_for, lambda loaded: saved_tool_format(models, loaded.name)
            ),
            downloads=DownloadManager(settings.models_path),
            cancels=Cancels(),
            tools=toolbox,
            mcp=mcp,
            tool_context=context,
            embeddings=EmbeddingModels(settings.models_path, settings.embedding_ctx_size),
        )
        for given, flag in ((settings.users_file, "--users-file"), (settings.api_keys_file, "--api-keys-file")):
            if given and not Path(given).is_file():
                raise SettingsError(f"{flag} {given}: there is no such file. Make it with scripts/users.py.")
        services.accounts = load_accounts(settings.users_path, settings.ui_credentials(), settings.admin_names)
        services.api_keys = load_api_keys(settings.api_keys_path, services.accounts, settings.api_key)
        services.audit = AuditLog(user_dir / "logs" / "audit.jsonl")
        for attr, library in services._libraries_for(None).items():  # (logged only with log-in or API keys)
            setattr(services, attr, library)
        for warning in [*(services.accounts.warnings if services.accounts else []), *services.api_keys.warnings]:
            log.warning("%s", warning)
        if settings.embedding_model:
            try:
                services.embeddings.load(settings.embedding_model, allow_path=True)
            except WebUIError as exc:  # start anyway: /v1/embeddings says none is loaded, the Model tab can load one
                log.error("The embedding model %s was not loaded: %s", settings.embedding_model, exc.message)
        return services

    def stop_generating(self) -> None:
        """The server is stopping (Ctrl+C): every reply, notebook text, comparison and tool call stops now, as
        with Stop, so each is saved as far as it got and the pages' streams close; the server does not wait
        for a long reply to run to its end."""
        self.cancels.stop_all()
        count = self.generator.cancel_all()
        if count:
            log.info("Stopping: %d generation(s) stopped", count)

    def close(self) -> None:
        """Stop what runs beside the app (MCP servers, the embedding model); called when the server stops."""
        self.mcp.stop()
        self.embeddings.close()

    # ---- users: each one's own view of the app ----------------------------------------------------

    @property
    def root(self) -> Services:
        """The server-wide services (this one, or the one this user's view was made from)."""
        return self.shared or self

    def space(self, user: User | None) -> Services:
        """``user``'s view of the app: their own chats, notebook, settings and library copies, and the
        server's shared model, queue and libraries.

        Without log-in (no accounts) or for no user, the server-wide services themselves. The main
        admin (the first admin) keeps the user-data folder's existing data, so turning log-in on loses
        nobody's chats; every other user's data is under ``users/<folder>/``.
        """
        root = self.root
        if user is None:
            return root
        with root._spaces_lock:
            base = root._spaces.get(user.folder)
            if base is None:
                base = root._spaces[user.folder] = root._new_space(user)
            overlay = dict(base.overlay)  # (a page of this user's may be remembering a choice right now)
        if base.own_dir is None:
            return base
        # The server's settings as they are now (the admin may have changed them), the user's choices on top.
        return dataclasses.replace(base, settings=user_settings(root.settings, overlay))

    def _new_space(self, user: User) -> Services:
        queue = cast(Generator, UsersQueue(self.generator, user.name, lambda: self.limits_for(user)))
        # API keys without log-in: the key's user has no data of their own, but their role and share hold
        if self.accounts is None or self.accounts.is_own_folder(user):
            service = self.chat_service
            own_service = ChatService(queue, self.chats, service.choose_template, service.tool_format_for)
            return dataclasses.replace(
                self,
                user=user,
                shared=self,
                generator=queue,
                chat_service=own_service,
                _spaces={},
                **self._libraries_for(user),
            )
        settings = self.settings
        own = Path(settings.user_data_dir) / "users" / user.folder
        settings_path = own / "settings.yaml"
        overlay: dict[str, Any] = {}
        notices: tuple[str, ...] = ()
        if settings_path.is_file():
            try:
                overlay = {k: v for k, v in read_yaml(settings_path).items() if k in USER_KEYS}
            except SettingsError as exc:
                # The user's file broken by hand: set aside as the server's own is at start (else every later
                # choice of theirs would fail to save over it), their defaults used, their Model tab says so.
                notices = (set_aside_notice(settings_path, exc.message, "your own default settings are used"),)
                log.error("%s", notices[0])
        if not user.is_admin and user.name:  # (not the nameless view pages are built with)
            (own / "files").mkdir(parents=True, exist_ok=True)  # the one folder their read_file may read
        chats = ChatStore(own / "logs" / "chats")
        chat_index = ChatIndex(chats.folder / ".index.sqlite", chats)
        context = ToolContext(
            # read_file may read the folder the admin chose; anyone else only their own files folder
            allowed_folder=self.tool_context.allowed_folder if user.is_admin else own / "files",
            search_chats=lambda query, limit: search_all_chats(chats, chat_index, query, limit),
        )
        toolbox = ToolBox(
            [FileTools(Path(settings.user_data_dir) / "tools", context), McpTools(self.mcp)],
            timeout=settings.tool_timeout,
            max_result_chars=settings.tool_result_max_chars,
        )
        if user.is_admin:  # admins edit the shared libraries, each change in the audit log as theirs
            libraries = self._libraries_for(user)
            presets = cast(PresetStore, libraries["presets"])
            characters = cast(CharacterStore, libraries["characters"])
            templates = cast(InstructionTemplateStore, libraries["instruction_templates"])
        else:  # a user sees the shared libraries plus their own copies, where everything they save goes
            presets = cast(PresetStore, Layered(PresetStore(own / "presets"), shared_store(self.presets)))
            characters = cast(
                CharacterStore,
                Layered(
                    CharacterStore(own / "characters"),
                    shared_store(self.characters),
                    reads=("load", "read", "picture_of", "export_card", "export_files"),
                ),
            )
            templates = cast(
                InstructionTemplateStore,
                Layered(
                    InstructionTemplateStore(own / "instruction-templates"), shared_store(self.instruction_templates)
                ),
            )
        models, root = self.models, self

        def template_for(loaded: LoadedModel) -> tuple[ChatTemplate, str]:
            chosen = overlay.get("template_overrides", {}).get(loaded.name)
            override = chosen or template_override(root.settings, models, loaded.name)
            return choose_template(loaded.backend.chat_template, override, templates, loaded.backend.metadata)

        return dataclasses.replace(
            self,
            settings=user_settings(settings, overlay),
            settings_path=settings_path,
            presets=presets,
            chats=chats,
            chat_index=chat_index,
            characters=characters,
            instruction_templates=templates,
            generator=queue,
            chat_service=ChatService(queue, chats, template_for, lambda loaded: saved_tool_format(models, loaded.name)),
            tools=toolbox,
            tool_context=context,
            user=user,
            shared=self,
            own_dir=own,
            overlay=overlay,
            own_notices=notices,
            _spaces={},
        )

    @property
    def is_admin(self) -> bool:
        """Whether this view may do the admin's work (no log-in: the one local user may do everything)."""
        return self.user is None or self.user.is_admin

    def check_admin(self, action: str) -> None:
        """Refuse ``action`` unless this view's user is an admin (a refusal goes in the audit log; the
        admin's action itself is recorded by the caller, with its details, once it is done)."""
        if not self.is_admin:
            assert self.user is not None
            self.record("refused", what=action)
            raise PermissionDeniedError(
                f"Only the server's admin can {action}. Ask them, or use the model that is loaded.",
                key="error.admin_only",
                action=action,
            )

    def require_admin(self, action: str) -> None:
        """Refuse ``action`` unless this view's user is an admin; an admin's action goes in the audit log."""
        self.check_admin(action)
        self.record(action)

    def record(self, action: str, **details: Any) -> None:
        """Add ``action`` by this view's user to the audit log (when log-in or API keys are set up)."""
        self.root._record_as(self.user, action, **details)

    def _record_as(self, user: User | None, action: str, **details: Any) -> None:
        audit = self.root.audit
        if audit is None or (self.root.accounts is None and not (self.root.api_keys and self.root.api_keys.required)):
            return
        actor = (user.name or "guest") if user else "local"
        try:
            audit.record(actor, action, **details)
        except OSError as exc:  # the log's disk full or read-only: the action itself still happens
            log.error("Could not write the audit log: %s", exc)

    def _libraries_for(self, user: User | None) -> dict[str, Any]:
        """The shared libraries (presets, characters, instruction templates) as ``user`` edits them in
        place: every save, import and delete goes in the audit log as theirs (see :class:`SharedLibrary`)."""
        root = self.root

        def record(action: str, **details: Any) -> None:
            root._record_as(user, action, **details)

        return {attr: SharedLibrary(shared_store(getattr(root, attr)), kind, record) for attr, kind in LIBRARIES}

    def limits_for(self, user: User | None = None) -> UserLimits:
        """The share of the queue ``user`` (default: this view's) may take: admins and no-log-in none."""
        who = user if user is not None else self.user
        if who is None or who.is_admin:
            return UserLimits()
        settings = self.root.settings
        return UserLimits(max_queued=settings.user_max_queued, max_tokens=settings.user_max_tokens)

    def route_model(self, name: str | None) -> str | None:
        """Where an API request naming the model ``name`` goes: None for the main model, else a loaded model's
        name or one to load first (``--load-on-demand``; only for a user who may load it). Raises a 404
        naming the loaded models for a name that is not loaded (see ``ModelManager.route``)."""
        if not self.models.loaded_models() and not (name and self.models.load_on_demand):
            raise NoModelLoadedError("No model is loaded. Load one in the web UI or with POST /v1/internal/model/load.")
        target = self.models.route(name)
        if target is not None and self.models.find(target) is None:
            if self.may_load(target):
                self.record("load the model on demand", model=target)
            else:
                self.require_admin(f"load the model {target}")
        return target

    def may_load(self, name: str) -> bool:
        """Whether this view's user may load ``name``: an admin any model, others those in --user-models."""
        return self.is_admin or name in self.root.settings.user_model_names

    def models_for_user(self) -> list[str]:
        """The models this view's user may pick: every model for an admin; for others the loaded one and
        those the admin allowed (--user-models)."""
        names = self.models.list_models()
        if self.is_admin:
            return names
        current = self.models.current
        allowed = set(self.root.settings.user_model_names) | ({current.name} if current else set())
        return [n for n in names if n in allowed]

    def download_model(self, listing: Listing, choice: Choice, token: str | None = None) -> DownloadJob:
        """Start downloading ``choice`` of ``listing`` into the models folder (the admin's); the audit log
        names the repository (or URL) and the files (never the token)."""
        self.check_admin("download models")
        job = self.downloads.start(listing, choice, token)
        source = listing.source
        where: dict[str, Any] = {"url": strip_query(source.url)} if source.url else {"repo": source.repo_id}
        if source.url is None and source.revision != "main":
            where["revision"] = source.revision
        self.record("download a model", **where, files=[f.path for f in choice.files], target=choice.target)
        return job

    def unload_model(self, name: str | None = None) -> None:
        """Free ``name`` (None: every loaded model). Admins only."""
        self.require_admin(f"unload the model {name}" if name else "unload the model")
        self.models.unload(name)

    def delete_model(self, name: str) -> str:
        self.require_admin(f"delete the model {name}")
        return self.models.delete_model(name)

    def import_model(self, path: str | Path, mode: str = "link") -> str:
        self.require_admin(f"import the model {Path(path).name}")
        return self.models.import_model(path, mode)

    def load_embedding_model(self, name: str) -> Any:
        self.require_admin(f"load the embedding model {name}")
        return self.embeddings.load(name)

    def unload_embedding_model(self) -> None:
        self.require_admin("unload the embedding model")
        self.embeddings.unload()

    def load_model(
        self,
        name: str,
        loader: str | None = None,
        options: LoadOptions | None = None,
        progress: Progress | None = None,
        explicit: dict[str, Any] | None = None,
        waiting: Callable[[int, float], None] | None = None,
    ) -> LoadedModel:
        """Load ``name`` with its saved per-model settings, and apply the preset saved for it.

        ``waiting(ahead, seconds)``: told twice a second while the load waits for the requests before it
        (a reply streaming when Load was clicked): how many, and about how long (:meth:`Generator.call`).

        With log-in, users who are not admins may load only the models the admin allowed (--user-models).

        ``options`` given (the Model tab sends every field): used as they are. Otherwise
        the options are the settings' defaults, then the model's saved settings, then
        ``explicit`` (the flags typed on the command line win over everything).
        """
        if self.may_load(name):
            self.record("load the model", model=name)
        else:
            self.require_admin(f"load the model {name}")
        saved_loader = None
        if loader is not None and not self.models.loaders.get(loader).capabilities.local_files:
            # A server's model: no per-model settings or preset saved for it on this machine.
            if options is None:
                options = LoadOptions.model_validate({**self.models.default_options.model_dump(), **(explicit or {})})
        else:
            saved = self.models.model_settings(name)
            if options is None:
                saved_loader, options = self.models.options_for(name, self.models.default_options, explicit)
            if saved.preset and saved.preset in self.presets.names():
                preset = self.presets.load(saved.preset)
                try:
                    self.remember(preset=saved.preset, params=preset.params.non_default())
                except SaveError as exc:  # the preset applies for this run; not being able to save it
                    log.error("%s", exc.message)  # must not cost the user the model load
        # Loaded on the generation thread: the thread that loads a llama.cpp model must be the one running it.
        return self.generator.call(
            lambda: self.models.load(name, loader or saved_loader, options, progress=progress), waiting=waiting
        )

    def template_override_for(self, model_name: str) -> str | None:
        """Instruction template chosen for a model: in the Chat tab, else saved in its per-model settings."""
        return template_override(self.settings, self.models, model_name)

    def template_for(self, loaded: LoadedModel) -> tuple[Template, str]:
        """The chat template ``loaded`` uses (its own, or the one chosen for it) and a note saying why."""
        return self.chat_service.choose_template(loaded)

    def tool_format_for(self, loaded: LoadedModel) -> str | None:
        """The tool-call format saved for ``loaded`` (its per-model settings), or None: the template decides.

        ``chat_prepare`` calls it on the generation thread when a request names no format.
        """
        return saved_tool_format(self.models, loaded.name)

    def detected_tool_format(self, model_name: str | None) -> str | None:
        """The tool-call format read from the chat template the loaded ``model_name`` uses (what "auto" means
        for it); None when that model is not the loaded one, is a chat server's (it parses its own calls) or
        its template cannot be read."""
        loaded = self.models.current
        if loaded is None or not model_name or loaded.name != model_name or loaded.backend.capabilities.chat_messages:
            return None
        try:
            backend = loaded.backend
            override = self.template_override_for(loaded.name)
            template, _ = self.choose_template(backend.chat_template, override, backend.metadata)
        except WebUIError as exc:
            log.warning("Cannot read the chat template of %s to find its tool-call format: %s", model_name, exc)
            return None
        return detect_format(template.source, loaded.backend.metadata).name

    @property
    def export_dir(self) -> Path:
        """Where chat downloads are written before the browser fetches them."""
        return self.data_dir / "logs" / "exports"

    def choose_template(
        self, model_template: str | None, override: str | None, metadata: dict[str, Any] | None = None
    ) -> tuple[ChatTemplate, str]:
        return choose_template(model_template, override, self.instruction_templates, metadata)

    def import_character(self, path: Path, original_name: str | None = None) -> ImportResult:
        """Import a card, character file or Modelfile into characters/.

        A Modelfile's PARAMETER values are saved as a preset named like the character (never over
        an existing preset), and its FROM is looked up in the models folder (``result.model``).
        """
        from webui.characters.modelfile import match_model

        result = self.characters.import_file(path, original_name)
        if result.params is not None:
            name, n = result.file_name, 2
            existing = {p.lower() for p in self.presets.names()}
            while name.lower() in existing:
                name, n = f"{result.file_name} ({n})", n + 1
            self.presets.save(name, result.params)
            result.preset = name
        result.model = match_model(result.model_ref, self.models.list_models())
        return result

    def remember_chat(self, character: str, chat_id: str) -> None:
        if (self.settings.chat_character, self.settings.chat_id) != (character, chat_id):
            self.remember(chat_character=character, chat_id=chat_id)

    @property
    def grammars_dir(self) -> Path:
        return Path(self.settings.user_data_dir) / "grammars"

    def grammar_names(self) -> list[str]:
        d = self.grammars_dir
        return sorted(p.name for p in d.glob("*.gbnf") if not p.name.startswith(".")) if d.is_dir() else []

    def read_grammar(self, name: str) -> str:
        from webui.storage import resolve_inside

        path = resolve_inside(self.grammars_dir, name)
        if not path.is_file():
            raise GrammarError(f"There is no grammar file called {name!r} in {self.grammars_dir}.")
        return path.read_text(encoding="utf-8")

    @property
    def data_dir(self) -> Path:
        """Where this view's user keeps their own files: the user-data folder, or users/<folder>/."""
        return self.own_dir or Path(self.settings.user_data_dir)

    @property
    def notebook_path(self) -> Path:
        return self.data_dir / "logs" / "notebook.txt"

    def load_notebook(self) -> str:
        try:
            return self.notebook_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def save_notebook(self, text: str) -> None:
        """Keep the Notebook text on disk (atomic), so a restart or a crash never loses it.

        Raises :class:`SaveError` if it cannot be written (the caller still has the text).
        """
        _save_text(self.notebook_path, text, "the notebook", "error.save_notebook")

    def box_path(self, box: str) -> Path:
        """Where the text of another box the user types into is kept (``SAVED_BOXES``)."""
        if box not in SAVED_BOXES:
            raise ValueError(f"not a saved box: {box}")
        return self.data_dir / "logs" / "boxes" / f"{box}.txt"

    def load_box(self, box: str) -> str:
        """The text last typed into ``box`` ("" when none)."""
        try:
            return self.box_path(box).read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("Cannot read %s: %s", self.box_path(box), exc)
            return ""

    def save_box(self, box: str, text: str) -> None:
        """Keep what was typed into ``box`` on disk, as the Notebook's text is kept (a reload or a restart puts
        it back). Raises :class:`SaveError` if it cannot be written (the box still has the text)."""
        _save_text(self.box_path(box), text, "the text", "error.save_text")

    def initial_params(self) -> SamplingParams:
        """The sampling values to start with: the saved ones, else the defaults."""
        try:
            return SamplingParams.model_validate(self.settings.params)
        except Exception as exc:  # a hand-edited settings file with a bad value
            log.warning("Ignoring saved sampling values: %s", exc)
            return SamplingParams()

    def remember(self, **updates: Any) -> None:
        """Save what the user chose, so a restart never resets it.

        The choice holds for this run in any case, unless a request that came in later already saved the
        same key (its value stays: see ``in_order``); :class:`SaveError` says it could not be written (an
        unwritable or hand-broken settings file), for the caller to show.
        """
        if self.own_dir is not None:
            server = {k: v for k, v in updates.items() if k not in USER_KEYS}
            if server:  # the server's settings (the model, the embedding model...): the admin's to change
                self.require_admin("change the server's settings")
                self.root.remember(**server)
            updates = {k: v for k, v in updates.items() if k in USER_KEYS}
            if not updates:
                return
        # One save of the file at a time; a value a newer request already saved stays (see in_order).
        with in_order(self.settings_path, updates) as fresh:
            updates = {k: v for k, v in updates.items() if k in fresh}
            if not updates:
                return
            if self.own_dir is not None:
                with self.root._spaces_lock:
                    self.overlay.update(updates)
            for key, value in updates.items():
                setattr(self.settings, key, value)  # pages opened from now on show these values
            try:
                remember(self.settings_path, **updates)
            except (SettingsError, OSError) as exc:
                detail = exc.message if isinstance(exc, SettingsError) else (exc.strerror or str(exc))
                raise SaveError(
                    f"Could not save your settings to {self.settings_path}: {detail}. "
                    "They hold until the app is restarted.",
                    key="error.save_settings",
                    path=str(self.settings_path),
                    detail=detail,
                ) from exc


def user_settings(server: Settings, overlay: dict[str, Any]) -> Settings:
    """A user's settings: the server's, with the user's own choices (USER_KEYS) from ``overlay``, and the
    defaults where they have made none - never the first admin's (their system prompt, preset, open chat).
    FROM_SERVER keys (how many messages the chat box shows) start from the server's setting instead."""
    defaults = {
        key: Settings.model_fields[key].get_default(call_default_factory=True) for key in USER_KEYS - FROM_SERVER
    }
    return server.model_copy(update={**defaults, **overlay})


class SharedLibrary:
    """A shared library (presets, characters or instruction templates) in the hands of someone who edits
    it in place - an admin, or the one local user: the store itself, and each change made to it (a save,
    an import, a delete) goes in the audit log with the item's kind and name, once it is done.

    ``record(action, **details)`` writes the entry as the editor's (it decides whether there is a log).
    """

    def __init__(self, store: Any, kind: str, record: Callable[..., None]) -> None:
        self.store = store
        self.kind = kind
        self._record = record

    def save(self, name: str, *args: Any, **kwargs: Any) -> Path:
        path = self.store.save(name, *args, **kwargs)
        self._record(f"save the shared {self.kind}", kind=self.kind, name=Path(path).stem)
        return cast(Path, path)

    def write(self, name: str, data: dict[str, Any]) -> Path:
        path = self.store.write(name, data)
        self._record(f"save the shared {self.kind}", kind=self.kind, name=Path(path).stem)
        return cast(Path, path)

    def delete(self, name: str) -> None:
        self.store.delete(name)
        self._record(f"delete the shared {self.kind}", kind=self.kind, name=name)

    def import_file(self, path: Path, original_name: str | None = None) -> ImportResult:
        result = cast(ImportResult, self.store.import_file(path, original_name))
        file = original_name or Path(path).name
        self._record(f"import the shared {self.kind}", kind=self.kind, name=result.file_name, file=file)
        return result

    def __getattr__(self, attr: str) -> Any:  # reading (names, load, picture_of...) is the store's
        if attr in ("store", "kind", "_record"):  # not set yet (a copy being made): no endless lookup
            raise AttributeError(attr)
        return getattr(self.store, attr)


def shared_store(library: Any) -> Any:
    """The store itself under a :class:`SharedLibrary` (a user's view reads it; they never write it)."""
    return library.store if isinstance(library, SharedLibrary) else library


def strip_query(url: str) -> str:
    """``url`` without a password, query or fragment (a pasted link may carry a token there)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]  # user:password@host -> host
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class UsersQueue:
    """The shared generation queue as one user's requests enter it: each job is marked as theirs, with
    their limits (the queue takes turns between users and refuses more than a user's share)."""

    def __init__(self, generator: Generator, user: str, limits: Callable[[], UserLimits]) -> None:
        self.generator = generator
        self.user = user
        self.limits = limits

    def submit(self, *args: Any, **kwargs: Any) -> GenerationJob:
        kwargs.setdefault("user", self.user)
        kwargs.setdefault("limits", self.limits())
        return self.generator.submit(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.generator, name)


def template_override(settings: Settings, models: ModelManager, model_name: str) -> str | None:
    """Instruction template chosen for a model: in the Chat tab, else saved in its per-model settings."""
    chosen = settings.template_overrides.get(model_name)
    if chosen:
        return chosen
    try:
        return models.model_settings(model_name).instruction_template
    except WebUIError:
        return None


def saved_tool_format(models: ModelManager, model_name: str) -> str | None:
    """The tool-call format saved for a model, or None (none saved: read it from the template).

    A name no format has (a hand-edited file) is logged and read as None, never an error for a request.
    """
    try:
        name = models.model_settings(model_name).tool_format
    except WebUIError:
        return None
    if name is None:
        return None
    try:
        format_by_name(name)
    except WebUIError as exc:
        log.warning(
            "%s It is saved for %s in %s; reading the format from the chat template instead.",
            exc.message,
            model_name,
            models.settings_file,
        )
        return None
    return name


class McpTools:
    """The tools of every ready MCP server as one provider (servers come and go while the app runs);
    a server that failed is listed as one entry with its status, so the Chat tab shows why."""

    source = "mcp"

    def __init__(self, servers: McpServers) -> None:
        self.servers = servers

    def tools(self) -> list[ToolInfo]:
        listed: list[ToolInfo] = []
        for provider in self.servers.providers():
            listed += provider.tools()
        for status in self.servers.status():
            if status.state == "failed":
                listed.append(ToolInfo(f"{status.name} (MCP server)", f"mcp: {status.name}", error=status.message))
        if self.servers.config_error:
            listed.append(ToolInfo("mcp.json", "mcp", error=self.servers.config_error))
        return listed

    def call(self, name: str, arguments: dict[str, Any], cancel: Any, timeout: float) -> ToolResult:
        for provider in self.servers.providers():
            if any(t.name == name for t in provider.tools()):
                return provider.call(name, arguments, cancel, timeout)
        return ToolResult(f"The MCP server of the tool {name} is not running.", error=True)

    def reload(self) -> None:
        self.servers.reload()


def search_all_chats(chats: ChatStore, index: ChatIndex, query: str, limit: int) -> list[dict[str, Any]]:
    """The user's chats (every character's) whose text contains ``query``, with the matching line."""
    needle = query.strip().casefold()
    found: list[dict[str, Any]] = []
    if not needle or not chats.folder.is_dir():
        return found
    for folder in sorted(p for p in chats.folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for info in index.search(folder.name, query):
            try:
                chat = chats.load(folder.name, info.id)
            except WebUIError:
                continue
            line = next((m.content for m in chat.messages if needle in m.content.casefold()), "")
            at = line.casefold().find(needle)
            snippet = line[max(0, at - 80) : at + len(needle) + 120].strip() if at >= 0 else ""
            found.append({"character": folder.name, "chat": info.title, "id": info.id, "text": snippet})
            if len(found) >= limit:
                return found
    return found
