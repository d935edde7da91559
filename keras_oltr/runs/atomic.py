"""Atomic file writes: a temporary name, fsync, `os.replace`.

A process killed at any moment leaves either the old or the new file, never half of
one. `fault_point` is the hook of the fault-injection tests: the environment variable
`KERAS_OLTR_FAULT="<write point>[:<n>]"` SIGKILLs the process the n-th (default
first) time it reaches that point of an artefact write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import uuid

from keras_oltr.runs.errors import WriteFailedError

TMP_PREFIX = ".tmp-"
FAULT_ENV = "KERAS_OLTR_FAULT"
_fault_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """SIGKILLs this process when `KERAS_OLTR_FAULT` names this write point (tests)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    _fault_hits[name] = _fault_hits.get(name, 0) + 1
    if _fault_hits[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(path: str) -> None:
    """Flushes a folder's entries (a rename is durable only after this)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: str) -> None:
    """fsyncs every file under `path` (or the file itself) and the folders."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        return
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(root)


_WHY = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
}


def write_failed(error: OSError, path: str) -> WriteFailedError:
    """The one-line error for an OSError while writing `path` (disk full, ...)."""
    code = error.errno
    if code is None and "No space left on device" in str(error):  # (h5py's wording)
        code = errno.ENOSPC
    why = _WHY.get(code) or f"could not write ({error.strerror or error})"
    return WriteFailedError(
        f"{why} while writing {path}; what was written before is kept (the last "
        "checkpoint stays valid): make room and rerun the same command to resume"
    )


def tmp_path_for(path: str) -> str:
    """A unique temporary name beside `path` that keeps its extension."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{name}")


@contextlib.contextmanager
def atomic_write(path: str, *, fault: str | None = None):
    """Yields a temporary path; on success it is fsynced and renamed to `path`.

    Works for files and folders (a folder at `path` is replaced as a whole). On an
    exception the temporary is removed and `path` is left as it was; an OSError
    (disk full, quota, I/O) is raised as one `WriteFailedError` naming `path`. `fault` names
    the write point for `fault_point` (hit after the temporary is written, before the
    rename, the moment a crash used to leave a truncated file).
    """
    tmp = tmp_path_for(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        yield tmp
        fsync_tree(tmp)
        if fault:
            fault_point(fault)
        if os.path.isdir(tmp) and os.path.isdir(path):
            old = tmp_path_for(path)
            os.rename(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as error:  # a full disk: one line, not a chain of tracebacks
        raise write_failed(error, path) from None
    finally:
        remove_quietly(tmp)


def remove_quietly(path: str) -> None:
    """Removes a file or folder if it exists; errors are ignored (clean-up only)."""
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


def write_text_atomic(path: str, text: str, *, fault: str | None = None) -> None:
    """Writes `text` to `path` through `atomic_write`."""
    with atomic_write(path, fault=fault) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def save_model_atomic(model, path: str, *, fault: str | None = None) -> None:
    """`model.save(path)` through `atomic_write` (the temporary keeps the .keras suffix)."""
    with atomic_write(path, fault=fault) as tmp:
        model.save(tmp)
