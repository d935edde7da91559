"""Bad inputs to trainers/train.py: each is exit code 2 with one line naming the culprit.

Table-driven: every case builds its inputs (split files, flags, workdir), runs the
CLI and checks the exit code, that stderr has exactly one `error:` line, no
traceback, and the words that name the flag / file / line. The label-typo case also
measures the child's peak RSS (< 1 GB).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_oltr.data import get_dataset
from keras_oltr.data.registry import parse_dataset_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "trainers", "train.py")


def _tree(root, *, num_classes=3, per_class=6):
    """Images of 16x16 gray PNG; returns {split: [lines]} (train/val/test)."""
    rng = np.random.default_rng(0)
    lines = {"train": [], "val": [], "test": []}
    for label in range(num_classes):
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (16, 16, 1), dtype=np.uint8)
            (root / f"c{label}" / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
            split = "val" if i == 0 else "test" if i == 1 else "train"
            lines[split].append(f"c{label}/{i}.png {label}")
    return lines


def _write(root, lines):
    args = []
    for split, rows in lines.items():
        path = root / f"my_{split}.txt"
        path.write_text("".join(r + "\n" for r in rows))
        args.append(f"--dataset_arg={split}={path}")
    return args


def _custom(tmp_path, edit=None):
    lines = _tree(tmp_path / "img")
    if edit:
        edit(lines)
    return [
        "--dataset=custom",
        f"--data_root={tmp_path / 'img'}",
        *_write(tmp_path, lines),
        "--batch_size=4",
    ]


def _label_typo(lines):
    lines["train"][3] = lines["train"][3].rsplit(" ", 1)[0] + " 1000000000"


def _escape(lines):
    lines["train"].append("../../../../etc/passwd 0")


def _empty_train(lines):
    lines["train"] = []


def _overlap(lines):
    lines["test"].append(lines["train"][0])


def _no_val(lines):
    del lines["val"]


def _one_class(lines):
    for rows in lines.values():
        rows[:] = [r.rsplit(" ", 1)[0] + " 0" for r in rows]


def _unreadable_class(tmp_path):
    args = _custom(tmp_path)
    for i in range(2, 6):  # every train image of class 2: a truncated PNG
        (tmp_path / "img" / "c2" / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return args


def _not_text(tmp_path):
    args = _custom(tmp_path)
    train = tmp_path / "my_train.txt"
    rows = train.read_bytes().split(b"\n")
    rows[1] = b"c0/caf\xe9.png 0"  # Latin-1, not UTF-8
    train.write_bytes(b"\n".join(rows))
    return args


def _existing_run(tmp_path):
    import dataclasses

    from keras_oltr.presets import get_preset, smoke
    from keras_oltr.runs import Workdir

    config = smoke(get_preset("mixed_mnist_lt"))
    config = dataclasses.replace(config, stage1=dataclasses.replace(config.stage1, epochs=5))
    Workdir(tmp_path / "run").write_config(config)
    return []


# (case id, args builder(tmp_path) -> extra args, words the error line must contain)
CASES = [
    ("nan_lr", lambda t: ["--stage1_lr=nan"], ["--stage1_lr", "nan"]),
    ("negative_lr", lambda t: ["--stage2_lr=-0.1"], ["--stage2_lr"]),
    ("negative_epochs", lambda t: ["--stage1_epochs=-1"], ["--stage1_epochs"]),
    ("max_steps_negative", lambda t: ["--max_steps_per_epoch=-2"], ["--max_steps_per_epoch"]),
    ("checkpoint_negative", lambda t: ["--checkpoint_every_steps=-1"], ["checkpoint_every"]),
    ("unknown_dataset_arg", lambda t: ["--dataset_arg=nope=1"], ["nope", "Known"]),
    ("bad_bool", lambda t: _custom(t) + ["--dataset_arg=horizontal_flip=maybe"], ["flip"]),
    ("workdir_is_file", lambda t: [f"--workdir={TRAIN}"], ["--workdir is a file"]),
    ("label_typo", lambda t: _custom(t, _label_typo), ["my_train.txt:4", "1000000000"]),
    ("path_escape", lambda t: _custom(t, _escape), ["my_train.txt:13", "outside data_root"]),
    ("empty_train", lambda t: _custom(t, _empty_train), ["my_train.txt", "empty"]),
    (
        "overlap_error",
        lambda t: _custom(t, _overlap) + ["--dataset_arg=split_overlap=error"],
        ["my_test.txt:4", "two splits"],
    ),
    ("no_val", lambda t: _custom(t, _no_val), ["no val split", "--dataset_arg=val"]),
    ("one_class", lambda t: _custom(t, _one_class), ["my_train.txt", "fewer than two"]),
    ("unreadable_class", _unreadable_class, ["my_train.txt: class 2", "all unreadable"]),
    ("split_not_text", _not_text, ["my_train.txt:2", "not UTF-8 text"]),
    (
        "missing_data_root",
        lambda t: ["--dataset=imagenet_lt", f"--data_root={t / 'nope'}"],
        ["--data_root", "nope"],
    ),
    ("batch_too_large", lambda t: _custom(t) + ["--batch_size=64"], ["global_batch_size=64"]),
    ("other_config", _existing_run, ["another configuration", "stage1.epochs: 5 -> 2"]),
    ("config_field_typo", lambda t: ["--config.stage2.epoch=5"], ["config.stage2.epochs"]),
    ("nan_guard", lambda t: ["--max_unreadable_fraction=nan"], ["--max_unreadable_fraction"]),
    (
        "config_field_bad_value",
        lambda t: ["--config.stage2.momentum=1.5"],
        ["--config.stage2.momentum", "[0, 1)"],
    ),
]


def _run_measured(args, cwd):
    """Runs the CLI in a wrapper that reports the child's peak RSS (bytes)."""
    code = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(r.stderr)\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(peak)\n"
        "sys.exit(r.returncode)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, sys.executable, TRAIN, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    return result, int(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("case, build, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, build, words):
    extra = build(tmp_path)
    args = ["--smoke", "--verbose=0", f"--workdir={tmp_path / 'run'}", *extra]
    result, peak = _run_measured(args, REPO)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for word in words:
        assert word in errors[0], (word, errors[0])
    assert peak < 1 << 30, f"peak RSS {peak / 2**30:.2f} GB"
    if case == "other_config":  # the record of the existing run is untouched
        config = json.loads((tmp_path / "run" / "config.json").read_text())
        assert config["stage1"]["epochs"] == 5
    else:  # a run that fails before its first step leaves no run folder
        assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_nan_loss_stops_with_one_line_and_keeps_the_checkpoint(tmp_path):
    args = [
        "--smoke",
        "--verbose=0",
        "--stage1_lr=1e30",
        "--checkpoint_every_steps=1",
        f"--workdir={tmp_path}",
    ]
    result, _ = _run_measured(args, REPO)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "NaN/Inf" in errors[0], result.stderr[-3000:]
    assert not (tmp_path / "stage1" / "best.keras").exists()


def test_dataset_args_are_typed_and_checked():
    kwargs = parse_dataset_args(
        "custom",
        ["horizontal_flip=False", "check_files=no", "image_size=16", "name=flowers", "val=None"],
    )
    assert kwargs == {
        "horizontal_flip": False,
        "check_files": False,
        "image_size": 16,
        "name": "flowers",
        "val": None,
    }
    assert parse_dataset_args("custom", ["horizontal_flip=yes"])["horizontal_flip"] is True
    for bad, word in (("image_size=big", "integer"), ("flip=1", "Unknown")):
        with pytest.raises(ValueError, match=word):
            parse_dataset_args("custom", [bad])


def test_custom_dataset_takes_name_and_reads_image_size_and_channels(tmp_path):
    lines = _tree(tmp_path / "img")
    files = {s: str(tmp_path / f"my_{s}.txt") for s in lines}
    _write(tmp_path, lines)
    dataset = get_dataset("custom", data_root=str(tmp_path / "img"), name="flowers", **files)
    assert dataset.name == "flowers"
    assert (dataset.image_size, dataset.channels) == (16, 1)


def test_default_run_name_follows_the_dataset():
    import dataclasses

    from keras_oltr.experiment import default_run_name
    from keras_oltr.presets import get_preset, smoke

    preset = get_preset("mixed_mnist_lt")
    assert default_run_name(preset) == "mixed_mnist_lt"
    custom = dataclasses.replace(preset, dataset="custom", dataset_kwargs={"name": "flowers"})
    assert default_run_name(custom) == "flowers"
    assert default_run_name(smoke(custom)) == "flowers_smoke"


def test_unreadable_test_images_are_counted_and_fail_evaluation(tmp_path):
    import keras

    from keras_oltr.evaluation import evaluate_model

    lines = _tree(tmp_path / "img")
    (tmp_path / "img" / "c0" / "1.png").write_bytes(b"not an image")  # a test image
    files = {s: str(tmp_path / f"my_{s}.txt") for s in lines}
    _write(tmp_path, lines)
    dataset = get_dataset("custom", data_root=str(tmp_path / "img"), **files)
    inputs = keras.Input((16, 16, 1))
    logits = keras.layers.Dense(3)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, {"logits": logits})
    with pytest.raises(ValueError, match="1 of 3 listed images could not be read"):
        evaluate_model(model, dataset, str(tmp_path / "eval"), batch_size=2)
    evaluate_model(
        model, dataset, str(tmp_path / "eval"), batch_size=2, max_unreadable_fraction=0.5
    )
    document = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert document["extra"]["image_counts"]["test"] == {
        "listed": 3,
        "evaluated": 2,
        "skipped": 1,
    }


def test_stage2_without_stage1_leaves_no_run_folder(tmp_path):
    args = ["--smoke", "--verbose=0", "--stage=2", f"--workdir={tmp_path / 'run'}"]
    result, _ = _run_measured(args, REPO)
    assert result.returncode == 2 and "run --stage=1 first" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_download_without_network_names_the_cache_file(monkeypatch, tmp_path):
    import keras

    from keras_oltr.data import get_dataset

    def offline():
        raise Exception("URL fetch failure on https://www.cs.toronto.edu: -3 -- no network")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz") as caught:
        get_dataset("cifar10_lt")
    message = str(caught.value)
    assert os.path.join(str(tmp_path), "datasets", "cifar-10-batches-py-target") in message
    assert "no network" in message and "\n" not in message


@pytest.mark.slow
def test_symlink_out_of_data_root_is_one_line_and_exit_2(tmp_path):
    # A link inside data_root to a system file is refused like a `..` path, by
    # split file and line, before anything is read.
    args = _custom(tmp_path, lambda lines: lines["train"].append("c0/link.png 0"))
    os.symlink("/etc/passwd", tmp_path / "img" / "c0" / "link.png")
    run = ["--smoke", "--verbose=0", f"--workdir={tmp_path / 'run'}", *args]
    result, _ = _run_measured(run, REPO)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    for word in ("my_train.txt:13", "outside data_root", "/etc/passwd"):
        assert word in errors[0], (word, errors[0])
