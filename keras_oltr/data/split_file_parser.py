"""The OLTR split-file format: parsing split and class-name files, reporting problems.

A split file has one `relative/path label` line per image (open-set files use
label -1), e.g. `ImageNet_LT_train.txt`; a class-names file has one name per line.
`read_split_file` parses one split file and collects its problems; everything wrong
with a set of split files is raised as ONE `SplitFileError` that names the file and
line numbers, so that a long run never starts on broken splits.

Confinement: a split-file path must stay under `data_root` twice over. Its text
must not leave it (`escapes_data_root`: absolute or `..` paths), and neither may
the file it names once symbolic links are resolved (`DataRoot`: a link inside
`data_root` to `/etc/passwd` or to an image elsewhere would otherwise be read).
Resolution costs one `lstat` per file (which replaces the existence check's
`stat`, see `DataRoot.check`) plus one `realpath` per distinct folder and per
file that is itself a link, so a million-line split file stays as fast as
before. It is a guard against mistaken or received split trees, not a sandbox:
a link swapped in after loading is caught only where images are opened lazily.
"""

from __future__ import annotations

import collections
import os
import stat
from collections.abc import Mapping
from concurrent import futures

# Offending lines quoted per kind of problem in a SplitFileError.
MAX_QUOTED = 10

PROBLEM_KINDS = {
    "malformed": "malformed lines (expected `relative/path label`)",
    "duplicate": "duplicate images",
    "label": "labels out of range",
    "missing": "missing image files",
    "outside": (
        "paths outside data_root, as written or through symbolic links "
        "(pass allow_outside_data_root=True to allow)"
    ),
    "overlap": "images listed in two splits",
    "empty_split": "split files without images",
    "empty_class": "classes with zero train images",
}


class SplitFileError(ValueError):
    """Invalid split files: lists every kind of problem with file and line numbers.

    Attributes:
        problems: `{kind: [message, ...]}` with one message per offending line (or
            class), kinds from `PROBLEM_KINDS`.
    """

    def __init__(self, problems: Mapping[str, list[str]]):
        self.problems = {k: list(v) for k, v in problems.items() if v}
        total = sum(len(v) for v in self.problems.values())
        if total == 1:  # one problem, one line
            (kind, (message,)), *_ = self.problems.items()
            super().__init__(f"Invalid split files: {PROBLEM_KINDS[kind]}: {message}")
            return
        lines = [f"Invalid split files: {total} problem(s)."]
        for kind, messages in self.problems.items():
            lines.append(f"{PROBLEM_KINDS[kind]}: {len(messages)} in all")
            lines.extend(f"  {m}" for m in messages[:MAX_QUOTED])
            if len(messages) > MAX_QUOTED:
                lines.append(f"  ... and {len(messages) - MAX_QUOTED} more")
        super().__init__("\n".join(lines))


def read_split_file(path: str):
    """Parses a split file.

    Returns:
        `(entries, problems)`: entries is a list of `(line_number, relative_path,
        label)` for the well-formed lines; problems maps "malformed" and
        "duplicate" to messages naming the file and line. Blank lines are ignored.
    """
    entries, problems = [], collections.defaultdict(list)
    seen: dict[str, int] = {}
    name = os.path.basename(path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            parts = text.rsplit(maxsplit=1)  # paths may contain spaces, labels may not
            try:
                if len(parts) != 2:
                    raise ValueError
                label = int(parts[1])
            except ValueError:
                problems["malformed"].append(f"{name}:{lineno}: {text[:80]!r}")
                continue
            rel = parts[0]
            if rel in seen:
                problems["duplicate"].append(
                    f"{name}:{lineno}: {rel} (first listed on line {seen[rel]})"
                )
                continue
            seen[rel] = lineno
            entries.append((lineno, rel, label))
    return entries, problems


def escapes_data_root(rel: str) -> bool:
    """Whether a split-file path leaves the data root (absolute, or `..` upwards)."""
    if os.path.isabs(rel) or rel.startswith(("/", "\\")) or os.path.splitdrive(rel)[0]:
        return True
    norm = os.path.normpath(rel)
    return norm == ".." or norm.startswith(".." + os.sep)


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

    def _unfollowed(self, path: str) -> str:
        # The real folder (cached) joined with the last component, left unresolved.
        folder, name = os.path.split(path)
        if name in ("", ".", ".."):
            return os.path.realpath(path)
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(folder)
        return os.path.join(real, name)

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


def check_paths(paths: list[str], root: DataRoot | None) -> list[tuple[str, str]]:
    """`(status, resolved path)` per path (`DataRoot.check`; links unchecked without root)."""

    def one(path):
        if root is not None:
            return root.check(path)
        return ("file" if os.path.isfile(path) else "missing"), path

    # Thread pool: stat() latency dominates on network file systems.
    with futures.ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, paths, chunksize=256))


def read_class_names(path: str | None):
    """Names from a class-names file, one per line (blank lines skipped); None for None."""
    if path is None:
        return None
    if not os.path.isfile(path):
        raise ValueError(f"Class names file not found. Received: class_names_file={path!r}")
    with open(path, encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip())
