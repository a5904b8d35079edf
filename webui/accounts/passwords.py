"""Password hashing and checking (argon2id).

``users.yaml`` holds argon2id hashes written by ``scripts/users.py``; a plain-text password
written there by hand still works (compared in constant time) and the loader warns about it.
"""

from __future__ import annotations

import functools
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2id with the library's current recommended cost
HASH_PREFIX = "$argon2"


def hash_password(pw: str) -> str:
    """An argon2id hash of ``pw`` (a new random salt every time)."""
    return _HASHER.hash(pw)


def is_hashed(value: str) -> bool:
    """Whether a stored password is an argon2 hash (else it is plain text)."""
    return value.startswith(HASH_PREFIX)


def is_valid_hash(value: str) -> bool:
    """Whether ``value`` is an argon2 hash this library can check (not a truncated or edited one)."""
    try:
        _HASHER.check_needs_rehash(value)
    except (InvalidHashError, ValueError):
        return False
    return True


def verify_password(stored: str, given: str) -> bool:
    """Whether ``given`` is the password ``stored`` (an argon2 hash, or plain text)."""
    if is_hashed(stored):
        try:
            return _HASHER.verify(stored, given)
        except (VerificationError, InvalidHashError, ValueError):
            return False
    return hmac.compare_digest(stored.encode("utf-8"), given.encode("utf-8"))


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not a password anyone has")


def waste_a_check(given: str) -> None:
    """Spend the time of one password check, so an unknown name answers as slowly as a known one."""
    verify_password(_dummy_hash(), given)
