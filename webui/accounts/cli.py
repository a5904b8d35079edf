"""``scripts/users.py``: manage the users file and the API keys from the command line.

    python scripts/users.py add alice --admin        # asks for the password twice
    python scripts/users.py passwd bob
    python scripts/users.py role bob admin
    python scripts/users.py remove bob               # also removes bob's API keys
    python scripts/users.py list
    python scripts/users.py add-key alice            # prints the new key once
    python scripts/users.py revoke-keys alice
    python scripts/users.py hash-all                 # hashes plain-text passwords and keys in place

The files default to ``users.yaml`` and ``api-keys.yaml`` in the user-data folder (``--user-data-dir``,
else ``WEBUI_USER_DATA_DIR``, else the project folder: the server's own default).

Every change (not ``list``) goes in that folder's audit log (``logs/audit.jsonl``, the server's): actor
``scripts/users.py``, the OS user who ran it (``os_user``), the action and the user it was about -
never a password, a hash or a key.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from webui.accounts.audit import AuditLog
from webui.accounts.keys import add_key, hash_plain_keys, read_keys_file, remove_keys
from webui.accounts.names import canonical_key
from webui.accounts.passwords import is_hashed
from webui.accounts.users import Accounts, load_accounts, read_users_file
from webui.accounts.users_file import (
    add_user,
    check_name_free,
    find_user,
    hash_plain_passwords,
    remove_user,
    set_password,
    set_role,
)
from webui.errors import WebUIError

PROJECT_DIR = Path(__file__).resolve().parents[2]
USERS_FILE = "users.yaml"
KEYS_FILE = "api-keys.yaml"
#: Who the audit log says made a change with this script (the OS user is a detail of the entry).
ACTOR = "scripts/users.py"

#: ``record(action, **details)``: one entry of the audit log.
Record = Callable[..., None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/users.py",
        description="Manage who may log in to the web UI (users.yaml) and their API keys (api-keys.yaml).",
    )
    parser.add_argument(
        "--user-data-dir",
        type=Path,
        default=None,
        help="The server's user-data folder (default: $WEBUI_USER_DATA_DIR, else the project folder).",
    )
    parser.add_argument("--file", type=Path, default=None, help="The users file (default: <user-data-dir>/users.yaml).")
    keys_help = "The API keys file (default: <user-data-dir>/api-keys.yaml)."
    parser.add_argument("--keys-file", type=Path, default=None, help=keys_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def password_stdin(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--password-stdin", action="store_true", help="Read the password from the first line of standard input."
        )

    p = sub.add_parser("add", help="Add a user (asks for the password).")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="Make the user an admin.")
    password_stdin(p)
    p = sub.add_parser("passwd", help="Set a user's password.")
    p.add_argument("name")
    password_stdin(p)
    p = sub.add_parser("role", help="Make a user an admin or an ordinary user.")
    p.add_argument("name")
    p.add_argument("role", choices=["admin", "user"])
    p = sub.add_parser("remove", help="Remove a user and their API keys (their files stay).")
    p.add_argument("name")
    p.add_argument("--keys-file", type=Path, default=argparse.SUPPRESS, help=keys_help)
    sub.add_parser("list", help="List the users, their roles and folders.")
    p = sub.add_parser("add-key", help="Make an API key for a user and print it (once).")
    p.add_argument("name")
    p.add_argument("--keys-file", type=Path, default=argparse.SUPPRESS, help=keys_help)
    p = sub.add_parser("revoke-keys", help="Remove all API keys of a user.")
    p.add_argument("name")
    p.add_argument("--keys-file", type=Path, default=argparse.SUPPRESS, help=keys_help)
    p = sub.add_parser("hash-all", help="Hash the plain-text passwords and keys in place.")
    p.add_argument("--keys-file", type=Path, default=argparse.SUPPRESS, help=keys_help)
    return parser


def _user_data_dir(args: argparse.Namespace) -> Path:
    if args.user_data_dir is not None:
        return Path(args.user_data_dir)
    env = os.environ.get("WEBUI_USER_DATA_DIR")
    return Path(env) if env else PROJECT_DIR


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    try:
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Password again: ")
    except EOFError:
        raise WebUIError("No password was typed (the input ended): pipe one in with --password-stdin.") from None
    if first != again:
        raise WebUIError("The two passwords differ; nothing was changed. Run the command again.")
    return first


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no login name in the environment nor the password database
        return None


def _recorder(data_dir: Path) -> Record:
    """Writes the script's changes to the user-data folder's audit log, as the server writes its own."""
    audit = AuditLog(data_dir / "logs" / "audit.jsonl")
    who = _os_user()

    def record(action: str, **details: object) -> None:
        try:
            audit.record(ACTOR, action, **details, **({"os_user": who} if who else {}))
        except OSError as exc:  # the change is made: say so, and that the log lacks it
            _say(f"Warning: could not write the audit log {audit.path}: {exc.strerror or exc}")

    return record


def _file_accounts(users_file: Path) -> Accounts | None:
    """The accounts of the users file alone (None: no file or no users), to show effective roles."""
    if not users_file.is_file() or not read_users_file(users_file)[0]:
        return None
    return load_accounts(users_file, [], [])


def _main_admin_note(before: Accounts | None, users_file: Path) -> None:
    """Tell when an edit changed who the main admin is: they see the existing chats and settings."""
    after = _file_accounts(users_file)
    old = before.main_admin.name if before else None
    new = after.main_admin.name if after else None
    if old and new and canonical_key(old) != canonical_key(new):
        _say(
            f"Note: {new} is now the main admin and so sees the chats, notebook and settings already in the "
            f"user-data folder (they were {old}'s)."
        )


def _add(args: argparse.Namespace, users_file: Path, keys_file: Path, record: Record) -> None:
    before = _file_accounts(users_file)
    check_name_free(users_file, args.name)  # before the prompt: no typing a password in vain
    password = _read_password(args.password_stdin)
    user = add_user(users_file, args.name, password, role="admin" if args.admin else "user")
    record("add a user", user=user.name, role=user.role)
    _say(f"Added {user.name} ({user.role}) to {users_file}.")
    if before is None and not user.is_admin:
        _say(f"Nobody else is an admin, so {user.name} is (make another user admin with `role NAME admin`).")
    _main_admin_note(before, users_file)


def _passwd(args: argparse.Namespace, users_file: Path, keys_file: Path, record: Record) -> None:
    find_user(users_file, args.name)  # before the prompt: no typing a password for a typo
    user = set_password(users_file, args.name, _read_password(args.password_stdin))
    record("change a user's password", user=user.name)
    _say(f"Changed the password of {user.name} in {users_file}.")


def _role(args: argparse.Namespace, users_file: Path, keys_file: Path, record: Record) -> None:
    before = _file_accounts(users_file)
    user = set_role(users_file, args.name, args.role)
    record("change a user's role", user=user.name, role=user.role)
    _say(f"{user.name} is now {'an admin' if user.is_admin else 'an ordinary user'} in {users_file}.")
    after = _file_accounts(users_file)
    if not user.is_admin and after is not None and after.main_admin.key == user.key:
        _say(f"Nobody else is an admin, so {user.name} stays the admin: make another user admin first.")
    _main_admin_note(before, users_file)


def _remove(args: argparse.Namespace, users_file: Path, keys_file: Path, record: Record) -> None:
    before = _file_accounts(users_file)
    user = remove_user(users_file, args.name)
    own = before is not None and before.is_own_folder(user)
    where = "the user-data folder" if own else f"users/{user.folder}/ of the user-data folder"
    _say(f"Removed {user.name} from {users_file}. Their chats and files stay in {where}.")
    removed = remove_keys(keys_file, user.name) if keys_file.is_file() else 0
    record("remove a user", user=user.name, keys_removed=removed)
    if removed:
        _say(f"Removed {removed} API key(s) of {user.name} from {keys_file}.")
    if _file_accounts(users_file) is None:
        _say(f"{users_file} has no users left: the server will not start until you add one or delete the file.")
    _main_admin_note(before, users_file)


def _add_key(args: argparse.Namespace, users_file: Path, keys_file: Path, record: Record) -> None:
    key = add_key(keys_file, args.name)
    name = args.name.strip()
    record("add an API key", user=name)  # (the user's name only: never the key nor its digest)
    print(key)  # alone on stdout, so `KEY=$(python scripts/users.py add-key NAME)` works
    _say(f"Stored the sha256 of this new key for {name} in {keys_file}; the key is not shown again.")
    accounts = _file_accounts(users_file)
    if accounts is None or accounts.find(name) is None:
        _say(f"{name} is not in {users_file}: the key works for the API only, as an ordinary user.")


def _revoke_keys(args: argparse.Namespace, users_file: Path, keys_file: Path, record: Record) -> None:
    removed = remove_keys(keys_file, args.name) if keys_file.is_file() else 0
    record("revoke a user's API keys", user=args.name.strip(), keys_removed=removed)
    _say(f"Removed {removed} API key(s) of {args.name.strip()} from {keys_file}.")


def _hash_all(args: argparse.Namespace, users_file: Path, keys_file: Path, record: Record) -> None:
    if not users_file.is_file() and not keys_file.is_file():
        raise WebUIError(f"There is neither {users_file} nor {keys_file}: nothing to hash.")
    if users_file.is_file():
        names = hash_plain_passwords(users_file)
        if names:
            record("hash the plain-text passwords", users=names)
        done = f"Hashed the passwords of {', '.join(names)}" if names else "All passwords were hashed already"
        _say(f"{done} in {users_file}.")
    if keys_file.is_file():
        names = hash_plain_keys(keys_file)
        if names:
            record("hash the plain-text API keys", users=names)
        done = (
            f"Replaced the plain-text keys of {', '.join(names)} by their sha256"
            if names
            else "All keys were hashed already"
        )
        _say(f"{done} in {keys_file}.")


def _list(args: argparse.Namespace, users_file: Path, keys_file: Path, record: Record) -> None:
    accounts = _file_accounts(users_file)
    names_with_keys = read_keys_file(keys_file)[0] if keys_file.is_file() else {}
    key_counts = {canonical_key(name): len(values) for name, values in names_with_keys.items()}
    if accounts is None and users_file.is_file():
        print(f"{users_file} lists no users: the server will not start until you add one (`add NAME --admin`).")
    elif accounts is None:
        print(f"There is no {users_file}: the web UI runs without log-in (add a user with `add NAME --admin`).")
    else:
        entries = read_users_file(users_file)[0]
        stored = {canonical_key(n): e["password"] for n, e in entries.items()}
        print(f"Users in {users_file}:")
        for user in accounts.users:
            notes = [
                "main admin, uses the user-data folder" if accounts.is_own_folder(user) else f"users/{user.folder}/"
            ]
            if not is_hashed(stored[user.key]):
                notes.append("PLAIN-TEXT password: run hash-all")
            if key_counts.get(user.key):
                notes.append(f"{key_counts[user.key]} API key(s)")
            print(f"  {user.name}  {user.role}  ({'; '.join(notes)})")
        for warning in accounts.warnings:
            _say(f"Warning: {warning}")
    api_only = [n.strip() for n in names_with_keys if accounts is None or accounts.find(n) is None]
    if api_only:
        print(f"API-only users in {keys_file}: {', '.join(api_only)}")


_COMMANDS: dict[str, Callable[[argparse.Namespace, Path, Path, Record], None]] = {
    "add": _add,
    "passwd": _passwd,
    "role": _role,
    "remove": _remove,
    "list": _list,
    "add-key": _add_key,
    "revoke-keys": _revoke_keys,
    "hash-all": _hash_all,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command in ``argv`` (default: the command line); 0 on success, 1 with a message on failure."""
    args = build_parser().parse_args(argv)
    data_dir = _user_data_dir(args)
    users_file = Path(args.file) if args.file else data_dir / USERS_FILE
    keys_file = Path(args.keys_file) if args.keys_file else data_dir / KEYS_FILE
    try:
        _COMMANDS[args.command](args, users_file, keys_file, _recorder(data_dir))
    except WebUIError as exc:
        _say(f"Error: {exc.message}")
        return 1
    except KeyboardInterrupt:
        _say("Stopped; nothing was changed.")
        return 130
    return 0
