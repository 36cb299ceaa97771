"""Field encryption, keyed lookup hashes and masking: pure functions over bytes and strings."""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


class FieldCipher:
    """AES-256-GCM for data at rest; the associated data binds a ciphertext to its column."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], context)

    def encrypt_text(self, text: str, context: str) -> bytes:
        return self.encrypt(text.encode(), context.encode())

    def decrypt_text(self, blob: bytes, context: str) -> str:
        return self.decrypt(blob, context.encode()).decode()


def lookup_hash(key: bytes, value: str) -> bytes:
    """A keyed hash to find a record by a secret value without storing the value in clear."""
    return hmac.new(key, value.encode(), hashlib.sha256).digest()


def mask_national_id(national_id: str) -> str:
    """110101********1234: region code and last four stay, the birth date and sequence go."""
    return national_id[:6] + "*" * (len(national_id) - 10) + national_id[-4:]


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:]


def mask_account(account: str) -> str:
    return "*" * max(len(account) - 4, 0) + account[-4:]


def mask_name(name: str) -> str:
    """张三丰 -> 张**; Wang Fang -> W*** F***: enough for a bank clerk to match, not to identify."""
    if " " in name.strip():
        return " ".join(part[:1] + "*" * (len(part) - 1) for part in name.split())
    return name[:1] + "*" * (len(name) - 1)
