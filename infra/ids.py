"""Identifiers drawn in the process rather than by the database."""

from __future__ import annotations

import os
import time

import numpy as np

_BYTES = 16


def uuid7_texts(count: int) -> list[str]:
    """`count` new UUIDv7s (RFC 9562: the Unix time in milliseconds, the version, 74 random bits) as
    text, in increasing order, so rows inserted in the list's order append to their index.

    For bulk inserts: PostgreSQL's uuidv7() reads /dev/urandom afresh for each id where it is built
    without OpenSSL (the embedded server is), which was a fifth of a person import's merge."""
    if count == 0:
        return []
    raw = np.frombuffer(os.urandom(_BYTES * count), dtype=np.uint8).reshape(count, _BYTES).copy()
    raw[:, :6] = np.frombuffer((time.time_ns() // 1_000_000).to_bytes(6, "big"), dtype=np.uint8)
    raw[:, 6] = 0x70 | (raw[:, 6] & 0x0F)  # version 7
    raw[:, 8] = 0x80 | (raw[:, 8] & 0x3F)  # the RFC's variant
    digits = np.sort(raw.view(f"S{_BYTES}").reshape(count)).tobytes().hex()
    width = 2 * _BYTES
    return [digits[i : i + width] for i in range(0, len(digits), width)]
