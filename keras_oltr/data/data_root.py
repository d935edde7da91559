"""Where split-file paths lead: confinement to data_root and existence, at scale.

A split-file path must stay under `data_root` twice over. Its text must not
leave it (`escapes_data_root`: absolute or `..` paths), and neither may the file
it names once symbolic links are resolved (`DataRoot`: a link inside `data_root`
to `/etc/passwd` or to an image elsewhere would otherwise be read).

`check_paths` checks every listed image at once: a folder with many listed files
is listed once (`os.scandir`) and each name looked up in the listing, with one
`realpath` per folder and per file that is itself a link; files of small folders
cost one `lstat` each. A million-line split file thus costs seconds, not a
million system calls. It is a guard against mistaken or received split trees,
not a sandbox: a link swapped in after loading is caught only where images are
opened lazily.
"""

from __future__ import annotations

import collections
import os
import stat
import sys
from concurrent import futures

# What `os.path.normpath` changes, in a path wrapped in separators.
_NOT_NORMAL = (os.sep * 2, f"{os.sep}.{os.sep}", f"{os.sep}..{os.sep}")


def escapes_data_root(rel: str) -> bool:
    """Whether a split-file path leaves the data root (absolute, or `..` upwards)."""
    if rel.startswith(("/", "\\")):
        return True
    if os.altsep and (os.path.isabs(rel) or os.path.splitdrive(rel)[0]):  # drives
        return True
    if ".." not in rel:  # (fast path: most paths)
        return False
    norm = os.path.normpath(rel)
    return norm == ".." or norm.startswith(".." + os.sep)


def normal_path(rel: str) -> str:
    """`os.path.normpath(rel)`, without its cost for paths that are already normal."""
    wrapped = f"{os.sep}{rel}{os.sep}"
    double, dot, dots = _NOT_NORMAL
    if os.altsep or double in wrapped or dot in wrapped or dots in wrapped:
        return os.path.normpath(rel)
    return rel


def joiner(data_root: str):
    """A fast `lambda rel: os.path.join(data_root, rel)` (one call per listed image)."""
    prefix = os.path.join(data_root, "")
    if os.altsep:
        return lambda rel: os.path.join(data_root, rel)
    return lambda rel: rel if rel.startswith(os.sep) else prefix + rel


class DataRoot:
    """Where paths under a data root lead once symbolic links are resolved.

    `check(path)` says whether `path` (data_root joined with a relative path) is
    a file, is missing, or resolves outside the root (`os.path.realpath` of the
    file vs that of the root). Folders are resolved once each and cached, so a
    file that is not itself a link costs a single `lstat`. Thread-safe enough for
    a thread pool (the cache only ever gains equal values).
    """

    def __init__(self, data_root: str):
        self.root = os.path.realpath(data_root)
        self._prefix = self.root.rstrip(os.sep) + os.sep
        self._folders: dict[str, str] = {}

    def inside(self, real: str) -> bool:
        """Whether the resolved path `real` is the root or lies under it."""
        return real == self.root or real.startswith(self._prefix)

    def real_folder(self, folder: str) -> str:
        """`os.path.realpath(folder)`, cached."""
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(folder)
        return real

    def _unfollowed(self, path: str) -> str:
        # The real folder (cached) joined with the last component, left unresolved.
        folder, name = os.path.split(path)
        if name in ("", ".", ".."):
            return os.path.realpath(path)
        return os.path.join(self.real_folder(folder), name)

    def check(self, path: str) -> tuple[str, str]:
        """`(status, resolved path)`, status "file", "missing" or "outside".

        "outside" wins over "missing": a link that leaves the root is refused
        whether or not its target exists.
        """
        real = self._unfollowed(path)
        try:
            mode = os.lstat(real).st_mode
        except OSError:
            return ("missing" if self.inside(real) else "outside"), real
        if stat.S_ISLNK(mode):
            real = os.path.realpath(real)
            try:
                mode = os.stat(real).st_mode
            except OSError:
                mode = 0
        if not self.inside(real):
            return "outside", real
        return ("file" if stat.S_ISREG(mode) else "missing"), real


# Files listed in one folder from which the folder is listed once (`os.scandir`)
# instead of one `lstat` per file.
SCAN_MIN_FILES = 16
# Paths per task of the thread pool (stat latency dominates on network file systems).
_CHUNK = 256


def _folder_of(path: str) -> tuple[str, str]:
    if os.altsep:
        return os.path.split(path)
    folder, _, name = path.rpartition(os.sep)
    return folder or (os.sep if path.startswith(os.sep) else ""), name


def _listing(real_folder: str, names: set[str]):
    """`({name: DirEntry} of the listed names, whether an absent name is missing)`.

    None when the folder cannot be listed. An absent name is missing only in a
    case-sensitive folder; elsewhere (macOS, Windows, a case-folding mount: one
    listed name looked up with its case swapped tells) absent names are checked
    one by one.
    """
    try:
        with os.scandir(real_folder or os.curdir) as it:
            found = {e.name: e for e in it if e.name in names}
    except FileNotFoundError:
        return {}, True
    except OSError:  # not a folder, not allowed to list: check one by one
        return None
    exact = sys.platform not in ("darwin", "win32")
    probe = next((n for n in found if n != n.swapcase()), None)
    if exact and probe is not None:
        swapped = os.path.join(real_folder, probe.swapcase())
        exact = not os.path.lexists(swapped)
    return found, exact


def _check_one(path: str, root: DataRoot | None):
    if root is not None:
        return root.check(path)
    return ("file" if os.path.isfile(path) else "missing"), path


def check_paths(paths: list[str], root: DataRoot | None) -> list[tuple[int, str, str | None]]:
    """`(index, status, resolved path or None)` of the paths that are not plain files.

    status is "missing" or "outside" (`DataRoot.check`; without a root links are
    followed and nothing is "outside"). A folder with at least `SCAN_MIN_FILES`
    listed files is listed once and the names are looked up in that listing, so
    a million-line split file costs one pass over its folders rather than a
    million `stat`s; files in smaller folders, and links, cost one `lstat` each
    (in a thread pool: on network file systems its latency dominates).
    """
    by_folder: dict[str, list[int]] = collections.defaultdict(list)
    for index, path in enumerate(paths):
        by_folder[_folder_of(path)[0]].append(index)
    found, one_by_one = [], []
    for folder, indices in by_folder.items():
        names = [os.path.basename(paths[i]) for i in indices]
        listing = None
        if len(indices) >= SCAN_MIN_FILES and not {"", ".", ".."} & set(names):
            real_folder = folder if root is None else root.real_folder(folder)
            listing = _listing(real_folder, set(names))
        if listing is None:
            one_by_one.extend(indices)
            continue
        entries, exact = listing
        inside = root is None or root.inside(real_folder)  # then so is every name
        for index, name in zip(indices, names, strict=True):
            entry = entries.get(name)
            if entry is None and not exact:
                one_by_one.append(index)
            elif not inside and not root.inside(os.path.join(real_folder, name)):
                found.append((index, "outside", os.path.join(real_folder, name)))
            elif entry is None:
                found.append((index, "missing", None))
            elif entry.is_symlink():
                one_by_one.append(index)
            elif not entry.is_file(follow_symlinks=False):
                found.append((index, "missing", None))

    def check(chunk):
        return [(i, *_check_one(paths[i], root)) for i in chunk]

    chunks = [one_by_one[i : i + _CHUNK] for i in range(0, len(one_by_one), _CHUNK)]
    with futures.ThreadPoolExecutor(max_workers=16) as pool:
        for checked in pool.map(check, chunks):
            found.extend(c for c in checked if c[1] != "file")
    return sorted(found)
