"""CPU threads shared out between the padrec jobs running on one machine.

torch's default intra-op thread count is every core. Two jobs that each take every core run
far more than twice as slowly (measured on 2 cores: a SASRec epoch of 28 s alone took 135-250 s
beside a second training): OpenMP threads of the two jobs spin waiting for each other. A job
whose ``train.num_threads`` is 0 (auto) therefore takes a slot in a per-user directory of live
padrec jobs and uses ``cores // live jobs`` threads (at least 1). The trainer calls
:func:`refresh` as it goes, which re-reads the directory at most every ``interval`` seconds,
so a job that started alone shrinks when another starts and grows back when it ends.

The directory is ``$PADREC_JOBS_DIR`` or ``<tmp>/padrec-jobs-<uid>``; a slot is a file named
after the process id, removed at exit; slots of processes that no longer exist are ignored and
deleted. Data-parallel processes each take a slot, so the cores are shared among them as well.
"""

from __future__ import annotations

import atexit
import os
import tempfile
import time
from pathlib import Path

__all__ = ["JobSlot", "current_slot", "jobs_dir", "refresh", "release", "take_slot", "usable_cores"]


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def jobs_dir() -> Path:
    """Where live jobs leave their slots."""
    env = os.environ.get("PADREC_JOBS_DIR")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(env) if env else Path(tempfile.gettempdir()) / f"padrec-jobs-{uid}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class JobSlot:
    """This process's slot among the live padrec jobs (see the module docstring).

    Args:
        directory: the jobs directory (default :func:`jobs_dir`).
        cores: cores to share (default :func:`usable_cores`).
        interval: :meth:`refresh` re-reads the directory at most this often (seconds).
    """

    def __init__(self, directory: str | Path | None = None, cores: int | None = None, interval: float = 10.0) -> None:
        self.directory = Path(directory) if directory else jobs_dir()
        self.cores = cores or usable_cores()
        self.interval = interval
        self.pid = os.getpid()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{self.pid}.job"
        self.path.write_text(f"{self.pid}\n")
        self.threads = 0
        self._checked = -float("inf")

    def live_jobs(self) -> int:
        """Slots of running processes (this one included); stale slots are deleted."""
        n = 0
        for f in self.directory.glob("*.job"):
            try:
                pid = int(f.stem)
            except ValueError:
                continue
            if pid == self.pid or _alive(pid):
                n += 1
            else:
                f.unlink(missing_ok=True)
        return max(1, n)

    def fair_threads(self) -> int:
        """``cores // live jobs``, at least 1."""
        return max(1, self.cores // self.live_jobs())

    def refresh(self, force: bool = False) -> int:
        """Set torch's intra-op threads to the fair share if it changed (at most every
        ``interval`` seconds unless ``force``); returns the thread count in use."""
        now = time.monotonic()
        if not force and now - self._checked < self.interval:
            return self.threads
        self._checked = now
        want = self.fair_threads()
        if want != self.threads:
            import torch

            torch.set_num_threads(want)
            self.threads = want
        return self.threads

    def close(self) -> None:
        """Give the slot back."""
        self.path.unlink(missing_ok=True)


_SLOT: JobSlot | None = None


def take_slot(**kwargs) -> JobSlot:
    """This process's slot (created once, released at exit) with its threads applied."""
    global _SLOT
    if _SLOT is None:
        _SLOT = JobSlot(**kwargs)
        atexit.register(release)
    _SLOT.refresh(force=True)
    return _SLOT


def current_slot() -> JobSlot | None:
    """The slot taken by :func:`take_slot`, if any."""
    return _SLOT


def refresh() -> None:
    """Re-balance this job's threads if it holds a slot (cheap; called by the trainer)."""
    if _SLOT is not None:
        _SLOT.refresh()


def release() -> None:
    """Give the slot back (at exit, or when the job chose an explicit thread count)."""
    global _SLOT
    if _SLOT is not None:
        _SLOT.close()
        _SLOT = None
