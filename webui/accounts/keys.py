"""API keys: which key belongs to which user (``api-keys.yaml``) and the ``--api-key`` admin key.

The file stores sha256 digests, never the keys::

    keys:
      alice: ["sha256:3f1c...", "sha256:9ab0..."]
      bob: ["sha256:..."]

``scripts/users.py add-key NAME`` makes a key, prints it once and stores its digest. A plain key
typed into the file by hand works too, with a warning. A name that is not in the users file is a
user of the API only (role user).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Any

from webui.accounts.names import canonical_key, check_user_name, name_in_file
from webui.accounts.users import USERS_COMMAND, Accounts, User, read_yaml_mapping
from webui.errors import SettingsError
from webui.storage import write_yaml

KEY_PREFIX = "sk-webui-"
DIGEST_PREFIX = "sha256:"
#: The user the ``--api-key`` key acts as when the server has no accounts.
API_KEY_USER = "api-key"


def new_key() -> str:
    """A new random API key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """What the keys file stores for ``key``: ``sha256:<hex>``."""
    return DIGEST_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _is_digest(value: str) -> bool:
    hexpart = value[len(DIGEST_PREFIX) :]
    return value.startswith(DIGEST_PREFIX) and len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)


class ApiKeys:
    """Maps an API key to its :class:`User`. ``required``: whether the API asks for a key at all."""

    def __init__(self, entries: list[tuple[bytes, User]], warnings: list[str] | None = None) -> None:
        """``entries``: (raw sha256 digest of a key, its user), the ``--api-key`` key first."""
        self._entries = entries
        self.warnings: list[str] = list(warnings or [])

    @property
    def required(self) -> bool:
        return bool(self._entries)

    def user_for(self, key: str | None) -> User | None:
        """The user ``key`` belongs to, or None. Compares every digest, in constant time."""
        if not key or not isinstance(key, str):
            return None
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        found: User | None = None
        for stored, user in self._entries:
            # no early exit: the time taken says nothing about which key (if any) matched
            if hmac.compare_digest(stored, digest) and found is None:
                found = user
        return found


def read_keys_file(path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """The ``keys:`` entries of ``path`` (name -> stored keys, as written), checked, and warnings."""
    return parse_keys(read_yaml_mapping(path), path)


def parse_keys(doc: dict[str, Any], path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """The checked ``keys:`` entries of keys-file document ``doc`` (read from ``path``), and warnings."""
    warnings = [f"{path} has a section {k!r} that is not used (only `keys:` is read)." for k in doc if k != "keys"]
    raw = doc.get("keys") or {}
    if not isinstance(raw, dict):
        raise SettingsError(f"`keys:` in {path} must map user names to lists of keys.")
    entries: dict[str, list[str]] = {}
    for name, value in raw.items():
        name_in_file(name, path)
        values = [value] if isinstance(value, str) else value
        if values is None:
            values = []
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise SettingsError(f"The keys of {name!r} in {path} must be a list of quoted keys.")
        for v in values:
            if v.startswith(DIGEST_PREFIX) and not _is_digest(v):
                raise SettingsError(
                    f"A key of {name!r} in {path} starts with {DIGEST_PREFIX!r} but is not a sha256 digest "
                    f"(64 hex digits). Make a new key with `{USERS_COMMAND} add-key {name.strip()}`."
                )
        entries[name] = values
    return entries, warnings


def load_api_keys(path: Path | None, accounts: Accounts | None, admin_key: str | None) -> ApiKeys:
    """The server's API keys: those of the keys file ``path`` (None or missing: none) and ``admin_key``.

    ``admin_key`` (``--api-key``) acts as the main admin when there are accounts, else as an
    admin called ``api-key``. Raises :class:`SettingsError` for a malformed file, two spellings of
    one name, or one key given to two users.
    """
    entries: list[tuple[bytes, User]] = []
    warnings: list[str] = []
    owners: dict[bytes, str] = {}
    if admin_key:
        admin = accounts.main_admin if accounts else User.named(API_KEY_USER, "admin")
        digest = hashlib.sha256(admin_key.encode("utf-8")).digest()
        entries.append((digest, admin))
        owners[digest] = "--api-key"
    if path is not None and Path(path).is_file():
        file_entries, warnings = read_keys_file(Path(path))
        seen: dict[str, str] = {}
        plain: list[str] = []
        for written, values in file_entries.items():
            name = written.strip()
            key = canonical_key(name)
            if key in seen:
                raise SettingsError(
                    f"{seen[key]!r} and {name!r} in {path} are the same user (names ignore case and full-width "
                    "letters): put all their keys under one name."
                )
            seen[key] = name
            user = (accounts.find(name) if accounts else None) or User.named(name, "user")
            for value in values:
                if _is_digest(value):
                    digest = bytes.fromhex(value[len(DIGEST_PREFIX) :])
                else:
                    digest = hashlib.sha256(value.encode("utf-8")).digest()
                    if name not in plain:
                        plain.append(name)
                if digest in owners and owners[digest] != name:
                    raise SettingsError(
                        f"One key in {path} belongs to both {owners[digest]} and {name}: a key must name one "
                        f"user. Remove it and make new keys with `{USERS_COMMAND} add-key NAME`."
                    )
                owners[digest] = name
                entries.append((digest, user))
        if plain:
            warnings.append(
                f"{path} holds plain-text keys for {', '.join(plain)}: run "
                f"`{USERS_COMMAND} --keys-file {path} hash-all` to store only their sha256."
            )
    return ApiKeys(entries, warnings)


def _read_keys_doc(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    path = Path(path)
    doc = read_yaml_mapping(path) if path.exists() else {}
    parse_keys(doc, path)  # refuses a file the server could not load either
    if not isinstance(doc.get("keys"), dict):
        doc["keys"] = {}
    return doc, doc["keys"]


def add_key(path: Path, name: str) -> str:
    """Make a new key for ``name``, store its digest in the keys file ``path`` and return the key."""
    name = check_user_name(name)
    doc, keys = _read_keys_doc(path)
    written = next((w for w in keys if canonical_key(w) == canonical_key(name)), name)
    current = keys.get(written)
    values = [current] if isinstance(current, str) else list(current or [])
    key = new_key()
    keys[written] = [*values, key_digest(key)]
    write_yaml(Path(path), doc)
    return key


def remove_keys(path: Path, name: str) -> int:
    """Remove every key of ``name`` from the keys file ``path``; how many there were."""
    doc, keys = _read_keys_doc(path)
    written = [w for w in keys if canonical_key(w) == canonical_key(name)]
    if not written:
        return 0
    removed = 0
    for w in written:
        value = keys.pop(w)
        removed += 1 if isinstance(value, str) else len(value or [])
    write_yaml(Path(path), doc)
    return removed


def hash_plain_keys(path: Path) -> list[str]:
    """Replace every plain-text key in the keys file by its digest; the names that had one."""
    doc, keys = _read_keys_doc(path)
    changed: list[str] = []
    for written, value in keys.items():
        values = [value] if isinstance(value, str) else list(value or [])
        hashed = [v if _is_digest(v) else key_digest(v) for v in values]
        if hashed != values or isinstance(value, str):
            keys[written] = hashed
            if hashed != values:
                changed.append(written.strip())
    if changed:
        write_yaml(Path(path), doc)
    return changed
