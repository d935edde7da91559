"""Staging folders of an export, beside its destination, and the clean-up of dead ones.

An export writes everything into ``<folder>/.tmp-export-<pid>-<token>@<host>`` in the
destination's folder and renames its results into place at the end, so a reader
(TF Serving, a deployment script) never sees half a model. A process killed in
between leaves its staging folder behind; every export into the same folder first
removes the staging folders whose process is gone: same host, and no process with
that pid. Those of a live process (a concurrent export) and of another host (a
shared file system, where a pid says nothing) are left alone. A pid reused by an
unrelated process keeps a leftover until that process ends, never the reverse.
"""

import contextlib
import os
import re
import shutil
import socket
import uuid

from absl import logging

STAGING_PREFIX = ".tmp-export-"
_STAGING_NAME = re.compile(r"^\.tmp-export-(\d+)-[0-9a-f]{8}@(.+)$")


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (signal 0 probes it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    return True


def stale_staging(folder) -> list:
    """The staging folders in ``folder`` left by dead processes of this host."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    host = socket.gethostname()
    stale = []
    for name in names:
        match = _STAGING_NAME.match(name)
        if match and match.group(2) == host and not process_alive(int(match.group(1))):
            stale.append(os.path.join(folder, name))
    return sorted(stale)


def remove_stale_staging(folder) -> list:
    """Removes `stale_staging(folder)`; returns what was removed."""
    removed = []
    for path in stale_staging(folder):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        if not os.path.lexists(path):
            removed.append(path)
    if removed:
        logging.info("Removed %d staging folder(s) of killed exports in %s.", len(removed), folder)
    return removed


@contextlib.contextmanager
def staging_folder(folder):
    """Yields a new staging folder in ``folder`` (created), removed on exit.

    Stale staging folders of dead processes in ``folder`` are removed first.
    """
    os.makedirs(folder, exist_ok=True)
    remove_stale_staging(folder)
    name = f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    path = os.path.join(folder, name)
    os.mkdir(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
