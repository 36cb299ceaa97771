"""Runs the face pipeline in a child process: dlib holds the GIL for seconds (the worker's
heartbeats must keep beating) and a crafted upload that crashes the decoder must not take the
worker down with it."""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import multiprocessing.context
import multiprocessing.popen_spawn_posix
import multiprocessing.process
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import TypeVar

from liveness.model import Action, Analysis, EarlierSubmission, Embedding, Enrollment, Media, Thresholds

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# The analysing process's heap on transparent huge pages (glibc 2.35 and later; older ones and
# other C libraries ignore the setting). dlib's 68-point landmark model is ~100 MB of small leaf
# vectors, a few thousand of them read at random for every sampled frame: with 4 KiB pages
# nearly every read also misses the TLB. Measured on the bench's 720p clip: landmarks ~3 -> ~2 ms
# a frame, 0.1-0.2 CPU-s less per check; the instructions are the same.
_HUGE_PAGE_HEAP = "glibc.malloc.hugetlb=1"
_environ_lock = threading.Lock()


class _HugePageProcess(multiprocessing.context.SpawnProcess):
    """A spawned process that starts with `_HUGE_PAGE_HEAP` among its glibc tunables."""

    @staticmethod
    def _Popen(process_obj: multiprocessing.process.BaseProcess) -> multiprocessing.popen_spawn_posix.Popen:
        # glibc reads its tunables once, at the start of a process: they can only reach the child
        # through the environment it is started with, which spawn takes from this process's.
        with _environ_lock:
            saved = os.environ.get("GLIBC_TUNABLES")
            os.environ["GLIBC_TUNABLES"] = f"{saved}:{_HUGE_PAGE_HEAP}" if saved else _HUGE_PAGE_HEAP
            try:
                return multiprocessing.popen_spawn_posix.Popen(process_obj)
            finally:
                if saved is None:
                    del os.environ["GLIBC_TUNABLES"]
                else:
                    os.environ["GLIBC_TUNABLES"] = saved


class _AnalysingContext(multiprocessing.context.SpawnContext):
    Process = _HugePageProcess


def analysing_context() -> multiprocessing.context.SpawnContext:
    """How analysing processes start: spawned, their heap on huge pages (`_HUGE_PAGE_HEAP`)."""
    return _AnalysingContext()


class AnalyserCrashed(Exception):
    """The analysing process died (killed, out of memory, or a crash in native code)."""


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when its parent dies, however it dies (SIGKILL, OOM): an
    orphaned analyser holds a quarter of a gigabyte and a selfie for nobody. Linux only (prctl);
    elsewhere the child still ends once the parent's pipe closes, at its next task."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _start_child(parent: int) -> None:
    _die_with(parent)
    import liveness.pipeline  # noqa: F401  -- loads dlib's models once per child, not per check


def _analyse(
    media: Media,
    challenge: tuple[Action, ...],
    reference: Embedding | None,
    earlier: tuple[EarlierSubmission, ...],
    t: Thresholds,
) -> Analysis:
    from liveness.pipeline import analyse

    return analyse(media, challenge, reference, earlier, t)


def _enroll(photo: bytes) -> Enrollment:
    from liveness.pipeline import enroll

    return enroll(photo)


class FaceAnalyser:
    """One analysing child process, replaced when it dies; recycled now and then to bound memory."""

    def __init__(self, checks_per_process: int = 200) -> None:
        self._per_process = checks_per_process
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=analysing_context(),
                initializer=_start_child,
                initargs=(os.getpid(),),
                max_tasks_per_child=self._per_process,
            )
        return self._executor

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._pool(), fn, *args)
        except BrokenProcessPool as exc:
            self.close()
            raise AnalyserCrashed(str(exc)) from None
        return result

    async def analyse(
        self,
        media: Media,
        challenge: Sequence[Action],
        reference: Embedding | None,
        earlier: Sequence[EarlierSubmission],
        thresholds: Thresholds,
    ) -> Analysis:
        return await self._run(_analyse, media, tuple(challenge), reference, tuple(earlier), thresholds)

    async def enroll(self, photo: bytes) -> Enrollment:
        return await self._run(_enroll, photo)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> FaceAnalyser:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
