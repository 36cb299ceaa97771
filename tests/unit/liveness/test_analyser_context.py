"""Analysing processes start with glibc's heap on transparent huge pages (liveness.analyser), and
the process starting them keeps its own environment."""

from __future__ import annotations

import os

import pytest

from liveness.analyser import analysing_context


def _child_tunables() -> str | None:
    with analysing_context().Pool(1) as pool:
        return pool.apply(os.getenv, ("GLIBC_TUNABLES",))


def test_an_analysing_process_starts_with_its_heap_on_huge_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert _child_tunables() == "glibc.malloc.hugetlb=1"
    assert "GLIBC_TUNABLES" not in os.environ


def test_tunables_set_already_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert _child_tunables() == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
