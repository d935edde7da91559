"""Fingerprints of a dataset's content, recorded with a run to refuse resuming on other data.

A split's fingerprint is a SHA-256 over its labels and, for split-file datasets, the
bytes of its split file (paths and labels as written), or for in-memory datasets its
image array. Editing a split file in place (two labels swapped, a line added) changes
it; the images behind the paths are not read (that would cost a pass over the data).
"""

import hashlib

import numpy as np

from keras_oltr.data.split_names import SPLITS

_CHUNK = 1 << 20


def split_fingerprint(dataset, split: str) -> str:
    """The hex SHA-256 (first 16 digits) of one split's content."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(dataset.split_labels(split), np.int64).tobytes())
    path = (getattr(dataset, "split_files", None) or {}).get(split)
    if path is not None:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    elif hasattr(dataset, "split_images"):
        digest.update(np.ascontiguousarray(dataset.split_images(split)).tobytes())
    return digest.hexdigest()[:16]


def dataset_fingerprints(dataset) -> dict[str, str]:
    """{split: fingerprint} of every split the dataset has, plus its class list."""
    out = {split: split_fingerprint(dataset, split) for split in SPLITS if dataset.has_split(split)}
    names = "\n".join(str(n) for n in dataset.class_names).encode("utf-8")
    out["class_names"] = hashlib.sha256(names).hexdigest()[:16]
    return out
