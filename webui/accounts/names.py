"""User names: which spellings are one user, and the folder each user's files live in.

"Alice", "ALICE" and full-width "Ａｌｉｃｅ" are one user (:func:`canonical_key`). A user's files
go to ``users/<folder>/`` where ``folder`` is :func:`user_folder` of the name: a single path
component that is safe on every OS, and different for every two different users.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from webui.errors import InvalidNameError, SettingsError
from webui.storage import MAX_NAME_LENGTH, safe_name

#: Folders of names that are not safe as they are: a readable slug plus this marker and hash.
_HASHED_FOLDER = re.compile(r"\+[0-9a-f]{16}\Z")
_SLUG_LENGTH = 40
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def canonical_key(name: str) -> str:
    """The form two spellings of one user name share: NFKC, case-folded, stripped."""
    # casefold() can undo NFKC for a few characters, hence normalising on both sides of it.
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    return folded.strip()


def check_user_name(name: str) -> str:
    """``name`` stripped, or :class:`InvalidNameError` when it cannot be a user name.

    A user name is typed into the log-in form: not empty, no control characters, at most
    ``MAX_NAME_LENGTH`` characters. Anything else (``/``, ``..``, ``CON``) is fine as a name:
    :func:`user_folder` turns it into a safe folder.
    """
    if not isinstance(name, str):
        raise InvalidNameError("A user name must be text.")
    stripped = name.strip()
    if not canonical_key(stripped):
        raise InvalidNameError("The user name is empty.")
    if len(stripped) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"The user name {stripped[:20]!r}... is longer than {MAX_NAME_LENGTH} characters.")
    if _CONTROL.search(stripped):
        raise InvalidNameError(f"The user name {stripped!r} contains a control character (a tab, a newline...).")
    return stripped


def name_in_file(name: object, path: object) -> str:
    """A user name read from the users or keys file ``path``, checked; :class:`SettingsError` naming the file."""
    if not isinstance(name, str):
        raise SettingsError(f"The user name {name!r} in {path} is not text: put it in quotes.")
    try:
        return check_user_name(name)
    except InvalidNameError as exc:
        raise SettingsError(f"{path}: {exc.message}") from exc


def user_folder(name: str) -> str:
    """The folder name (one path component) of user ``name``'s files under ``users/``.

    The canonical key itself when it is a safe file name; otherwise a slug of it plus ``+`` and
    16 hex digits of its sha256. A safe key that happens to look like such a hashed name is
    hashed too, so two different users never share a folder. Raises :class:`InvalidNameError`
    for an empty name.
    """
    key = canonical_key(name) if isinstance(name, str) else ""
    if not key:
        raise InvalidNameError("The user name is empty.")
    try:
        folder = safe_name(key, what="user name")
    except InvalidNameError:
        folder = ""
    if folder == key and not _HASHED_FOLDER.search(key):
        return folder
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in key)
    slug = re.sub(r"_+", "_", slug).strip("_")[:_SLUG_LENGTH] or "user"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    # The slug holds only letters, digits, '-' and '_': safe_name cannot refuse it.
    return safe_name(f"{slug}+{digest}", what="user folder")
