"""A multi-worker run needs one workdir that every worker sees: a shared disk.

Workers other than the chief read the chief's files (stage 1's best model for stage
2, the checkpoints they resume from), so hosts that each write to their own local
--workdir would fail later inside a collective, where the other workers only see
an aborted all-reduce. `check_shared_workdir` finds this at the start instead.
"""

import os
import secrets
import time

import numpy as np

from keras_oltr.distribute import sum_over_workers, worker_info
from keras_oltr.runs import WorkdirError, write_text_atomic

# How long a worker looks for the chief's token (a shared filesystem may show a new
# file to other hosts with a delay), in seconds between tries.
_READ_TRIES = (0.0, 0.5, 1.0, 2.0)
_SHARED_DISK = (
    "every worker of a multi-worker run must use the same --workdir on a filesystem "
    "that all hosts share (NFS, a cloud-storage mount)"
)


def _read_token(path):
    for delay in _READ_TRIES:
        time.sleep(delay)
        try:
            with open(path, encoding="utf-8") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            continue
    return None


def check_shared_workdir(workdir, strategy):
    """Checks that every worker of `strategy` sees the chief's `workdir`; no-op for one worker.

    The chief writes a fresh random token into the workdir; an all-reduce hands its
    value to every worker (and is the barrier after which the file exists); each
    worker reads the file; a second all-reduce counts the workers that found it.
    Every worker takes part in both, so all of them stop with one clear line.

    Raises:
        WorkdirError: on a worker that does not see the token ("this worker does not
            see ..."), and on the chief when another worker does not.
    """
    is_chief, index, workers = worker_info(strategy)
    if workers == 1:
        return
    path = workdir.run_token_path
    token = secrets.randbelow(2**31 - 1) + 1  # exact in float64 after the all-reduce
    if is_chief:
        write_text_atomic(path, f"{token}\n")
    sent = np.float64(token if is_chief else 0)
    chief_token = int(round(float(sum_over_workers(strategy, sent))))
    sees = _read_token(path) == chief_token
    seeing = int(round(float(sum_over_workers(strategy, np.float64(1.0 if sees else 0.0)))))
    root = os.path.abspath(workdir.root)
    if not sees:
        raise WorkdirError(
            f"Worker {index} does not see the files the chief wrote into --workdir {root}: "
            f"{_SHARED_DISK}."
        )
    if seeing < workers:
        raise WorkdirError(
            f"{workers - seeing} of the {workers - 1} other worker(s) do not see the files "
            f"the chief wrote into --workdir {root}: {_SHARED_DISK}."
        )
