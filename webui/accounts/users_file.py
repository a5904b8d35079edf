"""Editing the users file (add a user, change a password or a role, remove a user, hash all).

Every edit reads the whole file, changes one entry and writes the file back atomically (readers
see the old file or the new one) with owner-only permissions. Comments in the file are not kept.
Names match in any spelling (:func:`~.names.canonical_key`) and keep the spelling first written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from webui.accounts.names import canonical_key, check_user_name
from webui.accounts.passwords import hash_password, is_hashed
from webui.accounts.users import USERS_COMMAND, Role, User, parse_users, read_yaml_mapping
from webui.errors import SettingsError
from webui.storage import write_yaml


def _read(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The whole document and its checked ``users:`` mapping (both empty for a missing file)."""
    path = Path(path)
    doc = read_yaml_mapping(path) if path.exists() else {}
    parse_users(doc, path)  # refuses a file the server could not load either
    users = doc.get("users")
    if users is None:
        users = doc["users"] = {}
    return doc, users


def _find(users: dict[str, dict[str, Any]], name: str, path: Path) -> str:
    """The key of ``name`` in ``users`` as written in the file; SettingsError if there is none."""
    key = canonical_key(name)
    for written in users:
        if canonical_key(written) == key:
            return written
    known = ", ".join(users) or "none yet"
    raise SettingsError(f"There is no user {name!r} in {path} (users: {known}).")


def _checked_password(password: str) -> str:
    if not password:
        raise SettingsError("The password is empty: type at least one character.")
    return password


def _user(written: str, entry: dict[str, Any]) -> User:
    return User.named(written.strip(), entry.get("role", "user"))


def find_user(path: Path, name: str) -> User:
    """User ``name`` of the file (to check before asking for a password); SettingsError if there is none."""
    _, users = _read(path)
    written = _find(users, name, path)
    return _user(written, users[written])


def check_name_free(path: Path, name: str) -> str:
    """``name`` checked and stripped; SettingsError if the file has that user already (in any spelling)."""
    name = check_user_name(name)
    _, users = _read(path)
    _check_free(users, name, path)
    return name


def _check_free(users: dict[str, dict[str, Any]], name: str, path: Path) -> None:
    taken = [w for w in users if canonical_key(w) == canonical_key(name)]
    if taken:
        raise SettingsError(
            f"{path} already has user {taken[0]!r}. Change the password with "
            f"`{USERS_COMMAND} --file {path} passwd {taken[0]}`."
        )


def add_user(path: Path, name: str, password: str, *, role: Role = "user") -> User:
    """Add user ``name`` with ``password`` (stored as an argon2id hash); error if the name is taken."""
    name = check_user_name(name)
    doc, users = _read(path)
    _check_free(users, name, path)
    entry: dict[str, Any] = {"password": hash_password(_checked_password(password))}
    if role == "admin":
        entry["role"] = "admin"
    users[name] = entry
    write_yaml(Path(path), doc)
    return _user(name, entry)


def set_password(path: Path, name: str, password: str) -> User:
    """Give user ``name`` a new password (stored hashed)."""
    doc, users = _read(path)
    written = _find(users, name, path)
    users[written]["password"] = hash_password(_checked_password(password))
    write_yaml(Path(path), doc)
    return _user(written, users[written])


def set_role(path: Path, name: str, role: Role) -> User:
    """Make user ``name`` an admin or an ordinary user."""
    if role not in ("admin", "user"):
        raise SettingsError(f"Unknown role {role!r}: the roles are admin and user.")
    doc, users = _read(path)
    written = _find(users, name, path)
    if role == "admin":
        users[written]["role"] = "admin"
    else:
        users[written].pop("role", None)
    write_yaml(Path(path), doc)
    return _user(written, users[written])


def remove_user(path: Path, name: str) -> User:
    """Remove user ``name`` from the file (their chats and files stay where they are)."""
    doc, users = _read(path)
    written = _find(users, name, path)
    entry = users.pop(written)
    write_yaml(Path(path), doc)
    return _user(written, entry)


def hash_plain_passwords(path: Path) -> list[str]:
    """Hash every plain-text password in the file in place; the names whose password was hashed."""
    doc, users = _read(path)
    hashed = [w for w, e in users.items() if not is_hashed(e["password"])]
    for written in hashed:
        users[written]["password"] = hash_password(users[written]["password"])
    if hashed:
        write_yaml(Path(path), doc)
    return [w.strip() for w in hashed]
