r"""Time and memory of every host-side piece of a run at MS1M-LT scale (74.5K classes).

The pieces are in `scale_pieces.py`, the measuring in `scale_measure.py`. Usage::

    python benchmarks/scale.py --classes=1000,10000,74500 --images=890000 \
        --note="quiet: nothing else running"

Synthetic data, made before each piece is measured: long-tailed train labels (power
law counts, the largest `--max_per_class` or 2N/K if more, every class at least one
image, N in all, shuffled; at K = 74,500 and N = 890,000: 1,280 down to 6), random
float32 features of `--feature_dim`, top-1 predictions and logits. For every K of
`--classes` and N = `--images` it measures, through the library's public functions
(whatever the tree holds):

- split files (at the largest K only: their cost does not depend on K beyond the
  label check): `read_split_file` of an N-line train split; `SplitFileDataset` with
  `check_files=True` over N sound image files in a temporary folder (hard links to
  one 8x8 PNG: the existence check and one decode per class); the same over N
  empty files (every class unreadable: the time to its `SplitFileError`, which
  the bounded readability check reaches after at most 16 decodes of the classes of
  one block); the split file over a folder without the images;
- samplers: one epoch (N indices) of `epoch_order(sampler="random")` as the baseline
  and of `class_aware_order`;
- feature passes over precomputed features, fed as batches of `--feature_batch`
  (256, the eval batch) through an identity model, so what is timed is the pass's
  own host work plus one model call per batch: `class_mean_features` (centroids)
  and `train_feature_bank` (the bank pass, its selection included); `balanced_bank`
  alone; `with_nearest_neighbour_score` (setting the bank); the score of one batch
  of 32 against that bank (`inference_function`);
- metrics: `evaluate_top1_predictions` of N test predictions (20% open) with
  reachability and N/5 validation predictions; `evaluate_predictions` from [N', K]
  float32 logits, N' capped so that the logits take at most `--logits_gb` (the
  table says N'); `write_plots` + `write_report` of the top-1 result;
- the stage-2 OLTR model at `--image_size` px, batch `--batch`, for each
  `preset@K` of `--models` (default: ImageNet-LT's at 1,000 and 74,500 classes;
  `--models=ms1m_lt@74500` adds MS1M-LT's, minutes and 14 GB): build and compile
  (`build_oltr_model`, `compile_for_stage`), a train step (`train_on_batch`, median
  of `--model_steps` after a first, traced step; one when it takes 2 s or more) and
  an inference batch (`inference_function`, after a traced one). `imagenet_lt`'s
  model is ResNet-10 with a 512 fc, `ms1m_lt`'s ResNet-50 with a 2048 fc (its
  backbone weights are not loaded). The train step's peak counts from before the build.

Seconds: wall clock, the median of `--repeats` runs when one run takes under 2 s,
else one run. Peak MB: the peak resident set size of the process during the piece
(VmHWM, reset through /proc/self/clear_refs just before it, after malloc_trim)
minus its resident size at the start, so the piece's inputs are not counted and
C/C++ allocations (TensorFlow, numpy) are. Each group of pieces (split files,
samplers, features, metrics, each model) runs in its own child process per K. A
piece whose estimated peak exceeds `--memory_gb` is skipped, with the reason in
the table. Results: a Markdown table printed and written to `--out`/scale.md, and
scale.json, with the machine, its load and `--note` (was the machine quiet?).
"""

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import scale_measure
import scale_pieces
import tensorflow as tf
from absl import app, flags, logging
from scale_measure import CHILD_FLAGS, GROUPS, MEMORY_METHOD, RESULT

from keras_oltr.presets import get_preset

FLAGS = flags.FLAGS
flags.DEFINE_list("classes", ["1000", "10000", "74500"], "Numbers of classes K.")
flags.DEFINE_list("pieces", ["all"], "Groups to run: split, samplers, features, metrics, model.")
flags.DEFINE_list(
    "models",
    ["imagenet_lt@1000", "imagenet_lt@74500"],
    "Stage-2 models timed: preset@K (when K is in --classes), or preset for every K. "
    "The cost grows with K only through the K x D heads, so a few points suffice.",
)
flags.DEFINE_string(
    "files_dir",
    "/dev/shm" if os.path.isdir("/dev/shm") else None,
    "Where the 2N image files of the split pieces are made (default: /dev/shm, "
    "a tmpfs: making 890K files on this machine's disk takes about 10 minutes).",
)
flags.DEFINE_integer("child_timeout", 900, "Seconds before a child process is stopped.")
flags.DEFINE_string("out", "benchmarks/results", "Folder of scale.md and scale.json.")
flags.DEFINE_string("note", "not stated", "Whether the machine was quiet (written with results).")
# Internal: the parent runs each group in a child process with these.
flags.DEFINE_string("child", None, "Internal: run this group and print its results.")
flags.DEFINE_integer("child_classes", 0, "Internal: K of the child.")


# ------------------------------------------------------------------ the parent


def _machine():
    with open("/proc/meminfo") as f:
        total_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError:
        commit = "unknown"
    return {
        "cpu_count": os.cpu_count(),
        "ram_gb": round(total_kb / 1024**2, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "commit": commit,
        "load_average_start": os.getloadavg(),
    }


def _run_child(group, k, n, root):
    args = [
        sys.executable,
        os.path.abspath(__file__),
        f"--child={group}",
        f"--child_classes={k}",
        f"--child_root={root}",
    ]
    args += [f"--{name}={FLAGS[name].value}" for name in CHILD_FLAGS]
    start = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=FLAGS.child_timeout)
        out, code = proc.stdout, proc.returncode
        err = proc.stderr
    except subprocess.TimeoutExpired as error:
        out, code, err = error.stdout or "", "timeout", ""
        out = out.decode() if isinstance(out, bytes) else out
    rows = [json.loads(line[len(RESULT) :]) for line in out.splitlines() if line.startswith(RESULT)]
    for row in rows:
        row["group"] = group.partition(":")[0]
    if code != 0:
        tail = (err or "").strip().splitlines()[-1:] or [""]
        rows.append(
            dict(
                piece=f"{group} (child process)",
                classes=k,
                images=n,
                seconds=None,
                runs=0,
                peak_mb=None,
                note=f"failed: exit {code} {tail[0][:120]}",
                group=group.partition(":")[0],
            )
        )
    logging.info("%s at K=%d: %.0f s in its child process", group, k, time.perf_counter() - start)
    return rows


def _cell(value, fmt):
    return "-" if value is None else format(value, fmt)


def _row_line(r):
    return (
        f"| {r['piece']} | {r['classes']:,} | {r['images']:,} | {_cell(r['seconds'], '.3f')} "
        f"| {_cell(r['peak_mb'], ',.0f')} | {r['runs']} | {r['note']} |"
    )


def markdown(rows, machine, note):
    lines = [
        f"Machine: {machine['cpu_count']} CPUs, {machine['ram_gb']} GB RAM, "
        f"{machine['platform']}; TensorFlow {machine['tensorflow']}, Keras {machine['keras']}; "
        f"commit {machine['commit']}.",
        f"Load average at start {machine['load_average_start'][0]:.2f}, at end "
        f"{machine['load_average_end'][0]:.2f} (1 min). Machine state (--note): {note}.",
        f"Seconds: wall clock, median of the runs; {MEMORY_METHOD}.",
        f"Command: {shlex.join(machine['argv'])}",
        "",
        "| piece | K | N | seconds | peak MB | runs | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    lines.extend(_row_line(r) for r in rows)
    return "\n".join(lines) + "\n"


def _models_at(k):
    """The presets of --models to time at K classes."""
    presets = []
    for item in FLAGS.models:
        preset, _, at = item.partition("@")
        if not at or int(at) == k:
            presets.append(preset)
    return presets


def main(argv):
    del argv
    if FLAGS.child:
        scale_pieces.child(FLAGS.child, FLAGS.child_classes, FLAGS.images)
        return
    logging.set_verbosity(logging.INFO)
    ks = sorted(int(k) for k in FLAGS.classes)
    n = FLAGS.images
    if n < ks[-1]:
        raise app.UsageError(f"--images={n} must be >= the largest of --classes ({ks[-1]}).")
    groups = GROUPS if FLAGS.pieces == ["all"] else tuple(FLAGS.pieces)
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise app.UsageError(f"--pieces: unknown {sorted(unknown)}; known: {', '.join(GROUPS)}.")
    for item in FLAGS.models:
        get_preset(item.partition("@")[0])  # an unknown preset fails here, not in a child
    machine = _machine()
    start = time.perf_counter()
    rows, root, tmp = [], "", None
    if "split" in groups:
        tmp = tempfile.mkdtemp(prefix="scale_split_", dir=FLAGS.files_dir)
        root = os.path.join(tmp, "images")
        made = time.perf_counter()
        scale_measure.write_image_tree(root, n)
        logging.info("Wrote 2 x %d image files in %.0f s", n, time.perf_counter() - made)
    try:
        for k in ks:
            for group in groups:
                if group == "split" and k != ks[-1]:
                    continue  # K only bounds the label check
                names = [group]
                if group == "model":
                    names = [f"model:{p}" for p in _models_at(k)]
                for name in names:
                    for row in _run_child(name, k, n, root):
                        rows.append(row)
                        print(_row_line(row), flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    first = {}
    for i, row in enumerate(rows):
        first.setdefault(row["piece"], i)
    # Grouped as --pieces lists them, a piece's Ks together.
    rows.sort(key=lambda r: (GROUPS.index(r["group"]), first[r["piece"]], r["classes"]))
    machine["load_average_end"] = os.getloadavg()
    machine["argv"] = ["python", "benchmarks/scale.py", *sys.argv[1:]]
    machine["total_seconds"] = round(time.perf_counter() - start, 1)
    text = markdown(rows, machine, FLAGS.note)
    print("\n" + text)
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "scale.md"), "w") as f:
        f.write(f"# benchmarks/scale.py\n\n{text}\nTotal {machine['total_seconds']:.0f} s.\n")
    with open(os.path.join(FLAGS.out, "scale.json"), "w") as f:
        json.dump(
            {"machine": machine, "note": FLAGS.note, "memory": MEMORY_METHOD, "rows": rows},
            f,
            indent=2,
        )
    logging.info(
        "Wrote scale.md and scale.json in %s (%.0f s)", FLAGS.out, machine["total_seconds"]
    )


if __name__ == "__main__":
    app.run(main)
