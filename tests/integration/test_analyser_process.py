"""The face analyser's child process dies with the worker that started it (issue 17, item 6): a
SIGKILLed or OOM-killed worker must not leave a 250 MB process holding a selfie for nobody."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT.parent / "shared" / "faces" / "stills" / "obama__obama.jpg"

# A stand-in for the worker: it starts the analyser exactly as the worker does, uses it once (so the
# child is up with its models loaded), says its pid and waits to be killed.
WORKER = """
import asyncio, os, sys
from liveness.analyser import FaceAnalyser

async def main() -> None:
    analyser = FaceAnalyser()
    await analyser.enroll(open(sys.argv[1], "rb").read())
    print(os.getpid(), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_the_analyser_process_dies_with_a_killed_worker() -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(PHOTO)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert worker.stdout is not None
        assert int(worker.stdout.readline()) == worker.pid
        children = psutil.Process(worker.pid).children(recursive=True)
        analysers = [c for c in children if "multiprocessing" in " ".join(c.cmdline())]
        assert analysers, [c.cmdline() for c in children]
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        deadline = time.monotonic() + 10
        while alive := [a for a in analysers if a.is_running() and a.status() != psutil.STATUS_ZOMBIE]:
            assert time.monotonic() < deadline, f"the analyser outlived its worker: {[a.pid for a in alive]}"
            time.sleep(0.1)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
