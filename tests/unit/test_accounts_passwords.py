"""Password hashing with the real argon2id."""

from __future__ import annotations

from webui.accounts.passwords import hash_password, is_hashed, is_valid_hash, verify_password


def test_hash_is_argon2id_salted_and_verifies():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("$argon2id$") and is_hashed(first) and is_valid_hash(first)
    assert first != second  # a new salt each time
    assert verify_password(first, "correct horse") and verify_password(second, "correct horse")
    assert not verify_password(first, "correct horsE")
    assert not verify_password(first, "")


def test_unicode_passwords():
    stored = hash_password("пароль 密码 🔑")
    assert verify_password(stored, "пароль 密码 🔑")
    assert not verify_password(stored, "пароль 密码")


def test_plain_text_passwords_compare_exactly():
    assert not is_hashed("hunter2")
    assert verify_password("hunter2", "hunter2")
    assert not verify_password("hunter2", "hunter")
    assert not verify_password("hunter2", "hunter2 ")
    assert verify_password("ключ", "ключ")


def test_a_damaged_hash_never_verifies():
    good = hash_password("pw")
    for damaged in (good[:30], good.replace("m=65536", "m=abc"), "$argon2id$junk"):
        assert is_hashed(damaged)
        assert not verify_password(damaged, "pw")
    assert not is_valid_hash("$argon2id$junk")
