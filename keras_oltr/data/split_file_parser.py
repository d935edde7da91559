"""The OLTR split-file format: parsing split and class-name files, reporting problems.

A split file has one `relative/path label` line per image (open-set files use
label -1), e.g. `ImageNet_LT_train.txt`; a class-names file has one name per line.
Both are UTF-8 text, or UTF-16/UTF-32 with a byte-order mark (a UTF-8 mark is
stripped too, `text_lines`); a line that is not text is a problem naming the file
and line. `read_split_file` parses one split file and collects its problems;
everything wrong with a set of split files is raised as ONE `SplitFileError`
that names the file and line numbers, so that a long run never starts on broken
splits. Problems are collected up to `MAX_QUOTED` per kind and counted beyond,
so a split file of a million bad lines gives a message of twenty. Where the
listed paths lead (confinement to data_root, existence) is `data_root.py`.
"""

from __future__ import annotations

import codecs
import collections
import os
from collections.abc import Mapping

# Problems kept (and quoted) per kind in a SplitFileError; beyond it they are only
# counted, so a split file of a million bad lines costs no more than one of twenty.
MAX_QUOTED = 20

PROBLEM_KINDS = {
    "encoding": (
        "lines that are not text (split files are UTF-8, or UTF-16/UTF-32 with a byte-order mark)"
    ),
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
    "classes": "fewer than two known classes (open long-tailed recognition needs two)",
    "unreadable_class": "classes whose train images are all unreadable",
    "unchecked_classes": "classes not all checked for a readable image (fix the ones above first)",
}

# Byte-order marks and the codec that strips them (UTF-32 LE before UTF-16 LE,
# whose mark is its prefix). Without a mark a file is read as UTF-8.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class Problems:
    """Problems of split files by kind: the first `MAX_QUOTED` messages and a count.

    Memory stays bounded whatever the number of problems.
    """

    def __init__(self):
        self.quoted: dict[str, list[str]] = collections.defaultdict(list)
        self.counts: collections.Counter = collections.Counter()

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        if len(self.quoted[kind]) < MAX_QUOTED:
            self.quoted[kind].append(message)

    def update(self, other: Problems) -> None:
        """Adds the problems of `other` (its quoted messages first)."""
        for kind, count in other.counts.items():
            quoted = other.quoted[kind]
            room = MAX_QUOTED - len(self.quoted[kind])
            self.quoted[kind].extend(quoted[: max(room, 0)])
            self.counts[kind] += count

    def __bool__(self) -> bool:
        return bool(+self.counts)


class SplitFileError(ValueError):
    """Invalid split files: every kind of problem, with file and line numbers.

    Attributes:
        problems: `{kind: [message, ...]}`, the first `MAX_QUOTED` messages of each
            kind (one per offending line or class), kinds from `PROBLEM_KINDS`.
        counts: `{kind: number of problems}`, all of them.
    """

    def __init__(self, problems: Problems | Mapping[str, list[str]]):
        if not isinstance(problems, Problems):
            collected = Problems()
            for kind, messages in problems.items():
                for message in messages:
                    collected.add(kind, message)
            problems = collected
        self.counts = {k: n for k, n in problems.counts.items() if n}
        self.problems = {k: list(problems.quoted[k]) for k in self.counts}
        total = sum(self.counts.values())
        if total == 1:  # one problem, one line
            (kind, (message,)), *_ = self.problems.items()
            super().__init__(f"Invalid split files: {PROBLEM_KINDS[kind]}: {message}")
            return
        lines = [f"Invalid split files: {total:,} problem(s)."]
        for kind, messages in self.problems.items():
            lines.append(f"{PROBLEM_KINDS[kind]}: {self.counts[kind]:,} in all")
            lines.extend(f"  {m}" for m in messages)
            if self.counts[kind] > len(messages):
                lines.append(f"  ... and {self.counts[kind] - len(messages):,} more")
        super().__init__("\n".join(lines))


def text_lines(path: str):
    """Yields `(line number, text, problem)` for each line of a text file.

    The encoding follows the byte-order mark: UTF-8 (with or without one), UTF-16
    or UTF-32 (LE or BE); the mark is stripped. A line that does not decode, or
    holds a NUL character (a UTF-16 file without its mark looks like that), gives
    `text=None` and a problem in words; in UTF-16/32 the first such line ends the
    file. Lines end at "\\n", "\\r\\n" or a lone "\\r" (old Mac files).
    """
    with open(path, "rb") as f:
        data = f.read()
    encoding = next((codec for bom, codec in _BOMS if data.startswith(bom)), "utf-8-sig")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        if encoding == "utf-8-sig":  # UTF-8 decodes line by line: name every bad line
            yield from _utf8_lines(data)
            return
        lines = data[: error.start].decode(encoding, errors="replace").split("\n")
        yield from _checked(enumerate(lines[:-1], start=1), has_nul=True)
        yield len(lines), None, f"not {encoding.upper()} text ({error.reason})"
        return
    del data
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    yield from _checked(enumerate(text.split("\n"), start=1), has_nul="\0" in text)


def _utf8_lines(data: bytes):
    if b"\r" in data:  # 0x0d is never part of a multi-byte UTF-8 sequence
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            byte = error.object[error.start : error.start + 1].hex()
            yield lineno, None, f"not UTF-8 text (byte 0x{byte} at offset {error.start})"
            continue
        yield from _checked(((lineno, line),), has_nul="\0" in line)


def _checked(numbered, has_nul: bool):
    if not has_nul:
        for lineno, line in numbered:
            yield lineno, line, None
        return
    for lineno, line in numbered:
        if "\0" in line:
            yield lineno, None, "holds NUL characters (UTF-16 without a byte-order mark?)"
        else:
            yield lineno, line, None


def read_split_file(path: str):
    """Parses a split file (UTF-8, or UTF-16/UTF-32 with a byte-order mark).

    Returns:
        `(entries, problems)`: entries is a list of `(line_number, relative_path,
        label)` for the well-formed lines; problems (`Problems`) holds "encoding",
        "malformed" and "duplicate" messages naming the file and line. Blank lines
        are ignored.
    """
    entries, problems = [], Problems()
    seen: dict[str, int] = {}
    name = os.path.basename(path)
    for lineno, line, problem in text_lines(path):
        if problem is not None:
            problems.add("encoding", f"{name}:{lineno}: {problem}")
            continue
        text = line.strip()
        if not text:
            continue
        parts = text.rsplit(maxsplit=1)  # paths may contain spaces, labels may not
        try:
            if len(parts) != 2:
                raise ValueError
            label = int(parts[1])
        except ValueError:
            problems.add("malformed", f"{name}:{lineno}: {text[:80]!r}")
            continue
        rel = parts[0]
        if rel in seen:
            problems.add("duplicate", f"{name}:{lineno}: {rel} (first listed on line {seen[rel]})")
            continue
        seen[rel] = lineno
        entries.append((lineno, rel, label))
    return entries, problems


def read_class_names(path: str | None):
    """Names from a class-names file, one per line (blank lines skipped); None for None.

    Encoded as split files are (`text_lines`); a line that is not text is a
    ValueError naming the file and line.
    """
    if path is None:
        return None
    if not os.path.isfile(path):
        raise ValueError(f"Class names file not found. Received: class_names_file={path!r}")
    names = []
    for lineno, line, problem in text_lines(path):
        if problem is not None:
            raise ValueError(f"Class names file {path}, line {lineno}: {problem}.")
        if line.strip():
            names.append(line.strip())
    return tuple(names)
