"""The `socialcard` command line: every argument says what it is for, and --version answers."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from app.cli import parser


def _parsers(p: argparse.ArgumentParser, path: str = "socialcard") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{path} {name}")


def test_every_argument_and_command_has_help() -> None:
    missing = []
    for path, p in _parsers(parser()):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                named = {choice.dest for choice in action._choices_actions if choice.help}
                missing += [f"{path} {name}" for name in action.choices if name not in named]
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path}: {action.dest}")
    assert missing == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["--version"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("socialcard ")
    assert out.split()[1][0].isdigit()
