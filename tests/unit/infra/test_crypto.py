"""Field encryption, lookup hashes and masking."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.exceptions import InvalidTag

from infra.crypto import FieldCipher, lookup_hash, lookup_hashes, mask_account, mask_name, mask_national_id, mask_phone

KEY = bytes(range(32))
OTHER_KEY = bytes(range(32, 64))


@pytest.mark.parametrize("plaintext", [b"", b"x", b"110101194503072319", "张三".encode(), bytes(range(256)) * 10])
def test_round_trip(plaintext: bytes) -> None:
    cipher = FieldCipher(KEY)
    blob = cipher.encrypt(plaintext, b"persons.national_id")
    if len(plaintext) >= 8:
        assert plaintext not in blob
    assert cipher.decrypt(blob, b"persons.national_id") == plaintext


def test_text_round_trip() -> None:
    cipher = FieldCipher(KEY)
    blob = cipher.encrypt_text("张三 110101194503072319", "persons.name")
    assert cipher.decrypt_text(blob, "persons.name") == "张三 110101194503072319"


def test_texts_encrypted_at_once_each_with_a_nonce_of_its_own() -> None:
    cipher = FieldCipher(KEY)
    texts = ["110101194503072319", "110101194503072319", "", "张三"]
    blobs = cipher.encrypt_texts(texts, "persons.national_id")
    assert [cipher.decrypt_text(b, "persons.national_id") for b in blobs] == texts
    assert len({b[:12] for b in blobs}) == len(texts)
    assert [len(b) for b in blobs] == [12 + len(t.encode()) + 16 for t in texts]
    with pytest.raises(InvalidTag):
        cipher.decrypt_text(blobs[0], "persons.name")
    assert cipher.encrypt_texts([], "persons.name") == []


def test_lookup_hashes_are_lookup_hash_each() -> None:
    values = ["110101194503072319", "", "张三", "110101194503072319"]
    assert lookup_hashes(KEY, values) == [lookup_hash(KEY, v) for v in values]
    assert lookup_hashes(OTHER_KEY, values[:1]) != lookup_hashes(KEY, values[:1])


def test_ciphertext_layout_and_fresh_nonce() -> None:
    cipher = FieldCipher(KEY)
    a = cipher.encrypt(b"same", b"ctx")
    b = cipher.encrypt(b"same", b"ctx")
    assert a != b
    assert a[:12] != b[:12]
    assert len(a) == 12 + len(b"same") + 16


def test_other_context_fails() -> None:
    cipher = FieldCipher(KEY)
    blob = cipher.encrypt(b"secret", b"persons.national_id")
    with pytest.raises(InvalidTag):
        cipher.decrypt(blob, b"persons.phone")
    with pytest.raises(InvalidTag):
        cipher.decrypt_text(blob, "")


def test_other_key_fails() -> None:
    blob = FieldCipher(KEY).encrypt(b"secret", b"ctx")
    with pytest.raises(InvalidTag):
        FieldCipher(OTHER_KEY).decrypt(blob, b"ctx")


def test_tampered_ciphertext_fails() -> None:
    cipher = FieldCipher(KEY)
    blob = cipher.encrypt(b"secret", b"ctx")
    for i in range(len(blob)):
        tampered = blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1 :]
        with pytest.raises(InvalidTag):
            cipher.decrypt(tampered, b"ctx")


def test_truncated_ciphertext_fails() -> None:
    cipher = FieldCipher(KEY)
    blob = cipher.encrypt(b"secret", b"ctx")
    with pytest.raises(InvalidTag):
        cipher.decrypt(blob[:-1], b"ctx")


@pytest.mark.parametrize("key", [b"", b"short", bytes(31), bytes(33)])
def test_bad_key_length_is_refused(key: bytes) -> None:
    with pytest.raises(ValueError, match="key"):
        FieldCipher(key)


def test_mask_national_id() -> None:
    assert mask_national_id("110101194503072319") == "110101********2319"
    assert mask_national_id("11010519491231002X") == "110105********002X"


def test_mask_phone() -> None:
    assert mask_phone("13800138000") == "138****8000"


@pytest.mark.parametrize(
    ("account", "masked"),
    [
        ("6222020200001234567", "***************4567"),
        ("622202020000", "********0000"),
        ("1234", "1234"),
    ],
)
def test_mask_account(account: str, masked: str) -> None:
    assert mask_account(account) == masked
    assert len(mask_account(account)) == len(account)


def test_lookup_hash_is_deterministic_per_key() -> None:
    a = lookup_hash(KEY, "110101194503072319")
    assert a == lookup_hash(KEY, "110101194503072319")
    assert len(a) == 32
    assert a != lookup_hash(OTHER_KEY, "110101194503072319")
    assert a != lookup_hash(KEY, "110101194503072318")
    assert a != hashlib.sha256(b"110101194503072319").digest()  # keyed, not a bare hash


@pytest.mark.parametrize(
    ("name", "masked"), [("张三丰", "张**"), ("李四", "李*"), ("王", "王"), ("Wang Fang", "W*** F***")]
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked
