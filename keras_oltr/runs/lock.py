"""A run owns its folder: one process at a time trains in a workdir.

`WorkdirLock` holds an exclusive `flock` on `<workdir>/.lock` for as long as the run
lives, with the holder's pid, host and start time written in the file for the message
another run gets. The kernel drops the lock when the process ends, however it ends
(SIGKILL included), so a lock left by a dead process is simply taken over. Only the
chief of a multi-worker run locks; its workers share the folder by design.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time

from keras_oltr.runs.errors import WorkdirError

LOCK_FILE = ".lock"


class WorkdirInUseError(WorkdirError):
    """Another live process trains in this workdir."""


class WorkdirLock:
    """An exclusive lock of a run folder; `release` (or the process's end) frees it."""

    def __init__(self, root: str):
        self.path = os.path.join(root, LOCK_FILE)
        self._fd = None

    def acquire(self) -> WorkdirLock:
        """Takes the lock or raises WorkdirInUseError naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirInUseError(
                f"--workdir {os.path.dirname(self.path)} is in use by another run ({holder}); "
                "wait for it to end, or use another --workdir."
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(fd) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {info['pid']} on host {info['host']}, since {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"
