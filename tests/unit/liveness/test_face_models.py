"""face_recognition must load its dlib models (it calls quit() with status 0 when they are missing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = (
    "import face_recognition, face_recognition_models; print(face_recognition_models.pose_predictor_model_location())"
)


def test_face_recognition_models_load() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, f"no model path printed (silent exit); stdout={result.stdout!r} stderr={result.stderr!r}"
    path = Path(lines[-1].strip())
    assert path.name.endswith(".dat"), lines
    assert path.is_file(), f"{path} does not exist"
