"""`python -m socialcard` is the `socialcard` command."""

from __future__ import annotations

import subprocess
import sys

from app.cli import _version


def test_python_dash_m_runs_the_command_line() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "socialcard", "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert shown.stdout.strip() == f"socialcard {_version()}"
    helped = subprocess.run(
        [sys.executable, "-m", "socialcard", "import", "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0
    assert "persons" in helped.stdout
