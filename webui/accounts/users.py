"""Who may log in: the users file, ``--gradio-auth`` pairs and ``--admin``, loaded into :class:`Accounts`.

The users file (``users.yaml`` in the user-data folder) looks like::

    users:
      alice: {password: "$argon2id$...", role: admin}
      bob: {password: "$argon2id$..."}

``scripts/users.py`` writes it (:mod:`.users_file`); a password typed there by hand in plain text
still works, with a warning. Names are matched by :func:`~.names.canonical_key`, so "Alice" and
"alice" are one user and may not both be listed. Someone must be admin: ``role: admin``, ``--admin
NAME``, or else the first user. The first admin is the *main admin*, who keeps the chats, notebook
and settings already in the user-data folder; everyone else gets ``users/<folder>/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from webui.accounts.names import canonical_key, check_user_name, name_in_file, user_folder
from webui.accounts.passwords import is_hashed, is_valid_hash, verify_password, waste_a_check
from webui.errors import InvalidNameError, SettingsError
from webui.storage import yaml_problem

Role = Literal["admin", "user"]
ROLES: tuple[Role, ...] = ("admin", "user")
#: The command people run to edit the users file (messages name it).
USERS_COMMAND = "python scripts/users.py"
_ENTRY_KEYS = ("password", "role")


@dataclass(frozen=True)
class User:
    """A person who can log in (or call the API). Holds no password."""

    name: str  # as written in the users file
    role: Role
    folder: str  # user_folder(name)

    @classmethod
    def named(cls, name: str, role: Role = "user") -> User:
        return cls(name=name, role=role, folder=user_folder(name))

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def key(self) -> str:
        """The canonical form of the name (what two spellings of one user share)."""
        return canonical_key(self.name)


#: Nobody in particular, with a user's rights and no data of their own: the view a page is built with
#: before any request, and a /v1 caller without a key when log-in is on and the server has no API keys.
NOBODY = User(name="", role="user", folder=".nobody")


class Accounts:
    """The users of one server, their passwords and the warnings found while loading them."""

    def __init__(self, users: Sequence[User], passwords: dict[str, str], warnings: Iterable[str] = ()) -> None:
        """``passwords`` maps each user's canonical key to the stored password (hash or plain text)."""
        self.users: list[User] = list(users)
        self.warnings: list[str] = list(warnings)
        self._by_key = {u.key: u for u in self.users}
        self._passwords = dict(passwords)
        admins = [u for u in self.users if u.is_admin]
        if not admins:
            raise SettingsError("No user is an admin: give one user `role: admin` or start with --admin NAME.")
        #: the first admin: keeps the user-data folder's existing chats, notebook and settings
        self.main_admin: User = admins[0]

    def find(self, name: str | None) -> User | None:
        """The user called ``name`` in any spelling (case, full-width letters), or None."""
        if not isinstance(name, str):
            return None
        return self._by_key.get(canonical_key(name))

    def check_password(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None (an unknown name takes as long as a wrong password)."""
        user = self.find(name)
        stored = self._passwords.get(user.key) if user else None
        if user is None or stored is None or not isinstance(password, str):
            waste_a_check(password if isinstance(password, str) else "")
            return None
        return user if verify_password(stored, password) else None

    def is_own_folder(self, user: User) -> bool:
        """Whether ``user`` uses the user-data folder itself (the main admin) rather than ``users/<folder>/``."""
        return user.key == self.main_admin.key

    def __repr__(self) -> str:  # no passwords in logs
        return f"Accounts(users={[u.name for u in self.users]!r}, main_admin={self.main_admin.name!r})"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping with the same key twice (PyYAML keeps the last one silently)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor`: keys written here may override the merged ones
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str | int | float | bool):
            continue  # construct_mapping refuses unhashable keys with its own error
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} is written twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The mapping in YAML file ``path`` ({} when empty); :class:`SettingsError` naming the path otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path} is not UTF-8 text.") from exc
    except OSError as exc:
        raise SettingsError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no Python objects
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path} is not valid YAML: {yaml_problem(exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must hold a mapping (like `users:` followed by names), not {type(data).__name__}.")
    return data


def read_users_file(path: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The ``users:`` entries of ``path`` (name -> {password, role}), checked, and warnings."""
    return parse_users(read_yaml_mapping(path), path)


def parse_users(doc: dict[str, Any], path: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The checked ``users:`` entries of users-file document ``doc`` (read from ``path``), and warnings.

    The entries are ``doc``'s own dicts (an editor changes them in place). Raises
    :class:`SettingsError` naming the file and the user for anything that would make a user
    unable to log in or log in with the wrong role.
    """
    warnings = [
        f"{path} has a section {key!r} that is not used (only `users:` is read)." for key in doc if key != "users"
    ]
    raw = doc.get("users")
    if raw is None:
        return {}, warnings
    if not isinstance(raw, dict):
        raise SettingsError(f"`users:` in {path} must map names to {{password: ..., role: ...}}.")
    entries: dict[str, dict[str, Any]] = {}
    for name, entry in raw.items():
        name_in_file(name, path)
        if not isinstance(entry, dict):
            raise SettingsError(f"User {name!r} in {path} needs a password: `{name}: {{password: ...}}`.")
        password = entry.get("password")
        if not isinstance(password, str) or not password:
            what = "is not text: put it in quotes" if password not in (None, "") else "is missing"
            raise SettingsError(f"The password of user {name!r} in {path} {what}.")
        role = entry.get("role", "user")
        if role not in ROLES:
            raise SettingsError(f"User {name!r} in {path} has role {role!r}; the roles are admin and user.")
        unknown = [k for k in entry if k not in _ENTRY_KEYS]
        if unknown:
            warnings.append(
                f"User {name!r} in {path} has settings that are not used: {', '.join(map(str, unknown))} "
                f"(only {' and '.join(_ENTRY_KEYS)} are read)."
            )
        entries[name] = entry
    return entries, warnings


@dataclass
class _Entry:
    name: str
    password: str
    role: Role | None  # None: not said
    source: str


def _file_entries(path: Path) -> tuple[list[_Entry], list[str]]:
    """The users of users file ``path`` and the warnings about them (plain text, damaged hashes)."""
    file_entries, warnings = read_users_file(path)
    entries = [_Entry(name.strip(), e["password"], e.get("role"), str(path)) for name, e in file_entries.items()]
    plain = [e.name for e in entries if not is_hashed(e.password)]
    if len(plain) == 1:
        warnings.append(
            f"{path} holds a plain-text password for {plain[0]}: run "
            f"`{USERS_COMMAND} --file {path} passwd {plain[0]}` to set a hashed one "
            f"(or `{USERS_COMMAND} --file {path} hash-all` to hash it as it is)."
        )
    elif plain:
        warnings.append(
            f"{path} holds plain-text passwords for {', '.join(plain)}: run "
            f"`{USERS_COMMAND} --file {path} hash-all` to hash them in place."
        )
    for e in entries:
        if is_hashed(e.password) and not is_valid_hash(e.password):
            warnings.append(
                f"The password hash of {e.name} in {path} is damaged, so {e.name} cannot log in: "
                f"run `{USERS_COMMAND} --file {path} passwd {e.name}`."
            )
    return entries, warnings


def load_accounts(
    users_file: Path | None,
    pairs: list[tuple[str, str]],
    admins: list[str],
    *,
    pairs_source: str = "--gradio-auth",
) -> Accounts | None:
    """The server's accounts, or None when there is no users file and no pairs (nobody logs in).

    ``users_file``: the users file (a path that does not exist counts as none); ``pairs``: (name,
    password) in plain text from ``pairs_source`` (role user unless named in ``admins``);
    ``admins``: ``--admin`` names. If nobody is admin the first user is. Raises
    :class:`SettingsError` for a malformed file, two spellings of one name, an ``--admin`` name
    that is no user, or an empty password.
    """
    entries: list[_Entry] = []
    warnings: list[str] = []
    if users_file is not None and Path(users_file).is_file():
        entries, warnings = _file_entries(Path(users_file))
        if not entries and not pairs:
            raise SettingsError(
                f"{users_file} lists no users, so nobody could log in. Add one with "
                f"`{USERS_COMMAND} --file {users_file} add NAME --admin`, or delete the file to run without log-in."
            )
    elif not pairs:
        return None
    for name, password in pairs:
        try:
            name = check_user_name(name)
        except InvalidNameError as exc:
            raise SettingsError(f"{pairs_source}: {exc.message}") from exc
        if not password:
            raise SettingsError(f"The password of {name} in {pairs_source} is empty.")
        entries.append(_Entry(name, password, None, pairs_source))

    seen: dict[str, _Entry] = {}
    for entry in entries:
        key = canonical_key(entry.name)
        if key in seen:
            first = seen[key]
            where = first.source if first.source == entry.source else f"{first.source} and {entry.source}"
            raise SettingsError(
                f"{first.name!r} and {entry.name!r} in {where} are the same user (names ignore case and "
                "full-width letters): keep one of them."
            )
        seen[key] = entry

    wanted_admins = {canonical_key(a): a for a in admins}
    missing = [a for k, a in wanted_admins.items() if k not in seen]
    if missing:
        raise SettingsError(
            f"--admin {', '.join(missing)}: there is no such user. The users are: {', '.join(e.name for e in entries)}."
        )
    roles: list[Role] = ["admin" if canonical_key(e.name) in wanted_admins else (e.role or "user") for e in entries]
    if "admin" not in roles:
        roles[0] = "admin"
    users = [User.named(e.name, role) for e, role in zip(entries, roles, strict=True)]
    passwords = {u.key: e.password for u, e in zip(users, entries, strict=True)}
    return Accounts(users, passwords, warnings)
