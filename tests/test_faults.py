"""Fault injection: SIGKILL at every artefact write and damaged checkpoints.

One deterministic smoke run is the reference. A second run in another workdir is
killed (through the KERAS_OLTR_FAULT hook, which SIGKILLs the trainer at a named
write point, after the temporary file is written and before it is renamed) at
config.json, a step checkpoint, best.keras, latest.keras and metrics.json, and its
checkpoints are damaged in between (empty state.json, half a weights file). Every
rerun must resume, and the last one must end with exactly the reference weights.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_oltr.models  # noqa: F401  (registers the custom layers for load_model)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "trainers", "train.py")
COMMON = [
    "--smoke",
    "--deterministic",
    "--checkpoint_every_steps=1",
    "--noexport",
    "--verbose=0",
]


def _train(workdir, *args, fault=None):
    env = dict(os.environ)
    env.pop("KERAS_OLTR_FAULT", None)
    if fault:
        env["KERAS_OLTR_FAULT"] = fault
    return subprocess.run(
        [sys.executable, TRAIN, *COMMON, f"--workdir={workdir}", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )


def _killed(result):
    assert result.returncode == -9, (result.returncode, result.stderr[-3000:])


@pytest.mark.slow
def test_sigkill_at_every_write_and_damaged_checkpoints_resume_bit_exact(tmp_path):
    reference = _train(tmp_path / "ref", "--noevaluate")
    assert reference.returncode == 0, reference.stderr[-3000:]

    run = tmp_path / "run"
    _killed(_train(run, fault="config"))
    assert not (run / "config.json").exists()  # only a .tmp-* file, never half a config

    _killed(_train(run, "--noevaluate", fault="checkpoint:3"))
    ckpt = run / "stage1" / "checkpoint"
    assert json.loads((ckpt / "state.json").read_text())["global_step"] == 2
    (ckpt / "state.json").write_text("")  # as a power loss leaves an unsynced file

    result = _train(run, "--noevaluate", fault="best:2")
    _killed(result)
    assert "state.json is empty" in result.stderr and "previous checkpoint" in result.stderr
    weights = ckpt / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    result = _train(run, "--noevaluate", fault="latest")
    _killed(result)
    assert "model.weights.h5 cannot be read" in result.stderr
    assert (run / "stage1" / "best.keras").is_file()

    _killed(_train(run, fault="metrics"))
    assert not (run / "eval" / "stage1" / "metrics.json").exists()

    final = _train(run)
    assert final.returncode == 0, final.stderr[-3000:]
    json.loads((run / "eval" / "stage2" / "metrics.json").read_text())
    assert not [p for p in run.rglob(".tmp-*")], "temporary files were left behind"
    for stage in (1, 2):
        for name in ("best", "latest"):
            a = keras.saving.load_model(tmp_path / "ref" / f"stage{stage}" / f"{name}.keras")
            b = keras.saving.load_model(run / f"stage{stage}" / f"{name}.keras")
            for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
                np.testing.assert_array_equal(wa, wb, err_msg=f"stage {stage} {name}")


@pytest.mark.slow
def test_truncated_best_model_is_reported_as_damaged(tmp_path):
    result = _train(tmp_path, "--stage=1", "--noevaluate", "--stage1_epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    best = tmp_path / "stage1" / "best.keras"
    best.write_bytes(best.read_bytes()[:100])
    result = _train(tmp_path, "--stage=2", "--noevaluate", "--stage1_epochs=1")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "best.keras is damaged" in result.stderr and "Traceback" not in result.stderr


def _config(**stage1):
    import dataclasses

    from keras_oltr.presets import get_preset, smoke

    config = smoke(get_preset("mixed_mnist_lt"))
    return dataclasses.replace(config, stage1=dataclasses.replace(config.stage1, **stage1))


def test_workdir_config_is_compared_before_it_is_written(tmp_path):
    from keras_oltr.runs import ConfigMismatchError, Workdir

    run = Workdir(tmp_path)
    run.write_config(_config())
    before = (tmp_path / "config.json").read_text()
    with pytest.raises(ConfigMismatchError, match=r"stage1.learning_rate: 0.1 -> 0.05"):
        run.write_config(_config(learning_rate=0.05))
    assert (tmp_path / "config.json").read_text() == before
    # Stage 2 over again may change stage-2 settings only (stage 1's model stays).
    with pytest.raises(ConfigMismatchError, match="stage1.epochs"):
        run.write_config(_config(epochs=3), resume=False, stage="2")
    run.write_config(_config(learning_rate=0.05), resume=False)
    from keras_oltr.config import ExperimentConfig

    assert ExperimentConfig.from_workdir(run) == _config(learning_rate=0.05)
    assert not list(tmp_path.glob(".tmp-*"))


def test_workdir_threshold_selection_and_missing_model_messages(tmp_path):
    from keras_oltr.runs import CheckpointNotFoundError, Workdir

    run = Workdir(tmp_path)
    assert run.chosen_threshold(2, default=0.1) == (0.1, "default")
    os.makedirs(run.eval_dir(2))
    selection = {"threshold": 0.37, "score": "reachability"}
    with open(run.metrics_path(2), "w") as f:
        json.dump({"metrics": {"threshold_selection": selection}}, f)
    assert run.threshold_selection(2) == selection
    assert run.chosen_threshold(2, default=0.1)[0] == 0.37
    with pytest.raises(CheckpointNotFoundError, match="run --stage=1 first"):
        run.require_model(1)


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path):
    from keras_oltr.runs import Workdir, atomic_write

    path = tmp_path / "metrics.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and not list(tmp_path.glob(".tmp-*"))
    (tmp_path / ".tmp-1234-export").mkdir()  # as a killed export leaves it
    assert len(Workdir(tmp_path).clean_tmp()) == 1 and not list(tmp_path.glob(".tmp-*"))


def test_a_changed_split_is_refused_on_resume_and_named(tmp_path):
    from keras_oltr.runs import ConfigMismatchError, Workdir

    run = Workdir(tmp_path)
    run.write_config(_config(), fingerprints={"train": "aaaa", "val": "bbbb"})
    before = (tmp_path / "config.json").read_text()
    changed = {"train": "cccc", "val": "bbbb"}
    with pytest.raises(ConfigMismatchError, match=r"content of the train split\(s\) changed"):
        run.write_config(_config(), fingerprints=changed)
    # Stage 2 over again keeps stage 1's model, so its data may not change either.
    with pytest.raises(ConfigMismatchError, match="train split"):
        run.write_config(_config(), fingerprints=changed, resume=False, stage="2")
    assert (tmp_path / "config.json").read_text() == before
    run.write_config(_config(), fingerprints=changed, resume=False)  # --noresume: over
    assert json.loads((tmp_path / "config.json").read_text())["data_fingerprints"] == changed
    # A run folder from before fingerprints (and methods) resumes as it did.
    document = json.loads(before)
    for key in ("data_fingerprints", "method"):
        document.pop(key)
    (tmp_path / "config.json").write_text(json.dumps(document))
    run.write_config(_config(), fingerprints=changed)


def _image_tree(root, *, num_classes, per_class, size):
    """Gray PNGs under root/c{k}/; returns {split: ["c{k}/{i}.png k", ...]}."""
    rng = np.random.default_rng(0)
    lines = {"train": [], "val": [], "test": []}
    for label in range(num_classes):
        (root / f"c{label}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (size, size, 1), dtype=np.uint8)
            (root / f"c{label}" / f"{i}.png").write_bytes(tf.io.encode_png(pixels).numpy())
            split = "val" if i == 0 else "test" if i == 1 else "train"
            lines[split].append(f"c{label}/{i}.png {label}")
    return lines


def test_dataset_fingerprints_follow_the_split_files(tmp_path):
    from keras_oltr.data import (
        SplitFileDataset,  # noqa: F401  (registers "custom")
        get_dataset,
    )
    from keras_oltr.data.fingerprint import dataset_fingerprints

    root = tmp_path / "img"
    lines = _image_tree(root, num_classes=2, per_class=4, size=8)

    def build():
        kwargs = {}
        for split, rows in lines.items():
            (tmp_path / f"{split}.txt").write_text("".join(r + "\n" for r in rows))
            kwargs[split] = str(tmp_path / f"{split}.txt")
        return dataset_fingerprints(get_dataset("custom", data_root=str(root), **kwargs))

    first = build()
    assert build() == first
    lines["train"][0], lines["train"][2] = (  # two labels swapped in place
        lines["train"][0].replace(" 0", " 1"),
        lines["train"][2].replace(" 1", " 0"),
    )
    second = build()
    assert second["train"] != first["train"]
    assert {k: v for k, v in second.items() if k != "train"} == {
        k: v for k, v in first.items() if k != "train"
    }


def test_a_workdir_has_one_owner(tmp_path):
    from keras_oltr.runs import WorkdirInUseError, WorkdirLock

    with WorkdirLock(str(tmp_path)):
        with pytest.raises(WorkdirInUseError, match=rf"pid {os.getpid()} on host"):
            WorkdirLock(str(tmp_path)).acquire()
        result = subprocess.run(
            [sys.executable, TRAIN, "--smoke", "--verbose=0", f"--workdir={tmp_path}"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        assert result.returncode == 2, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and f"pid {os.getpid()}" in errors[0], result.stderr[-2000:]
    # A lock left by a process that ended (here: released) is taken over.
    (tmp_path / ".lock").write_text('{"pid": 999999, "host": "gone", "since": 0}')
    WorkdirLock(str(tmp_path)).acquire().release()


@pytest.mark.slow
def test_stage2_on_edited_split_files_is_refused(tmp_path):
    """Stage 1, then two labels swapped in the train split file, then --stage=2."""
    root = tmp_path / "img"
    lines = _image_tree(root, num_classes=3, per_class=6, size=16)
    args = [sys.executable, TRAIN, "--smoke", "--verbose=0", "--batch_size=4"]
    args += ["--dataset=custom", f"--data_root={root}", f"--workdir={tmp_path / 'run'}"]
    for split, rows in lines.items():
        (tmp_path / f"{split}.txt").write_text("".join(r + "\n" for r in rows))
        args.append(f"--dataset_arg={split}={tmp_path / f'{split}.txt'}")

    def run(*extra):
        return subprocess.run(
            [*args, *extra], capture_output=True, text=True, timeout=600, cwd=REPO
        )

    assert run("--stage=1").returncode == 0
    train = lines["train"]
    train[0], train[4] = train[0].replace(" 0", " 1"), train[4].replace(" 1", " 0")
    (tmp_path / "train.txt").write_text("".join(r + "\n" for r in train))
    result = run("--stage=2")
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train split(s) changed" in errors[0], result.stderr[-2000:]
    assert not (tmp_path / "run" / "stage2" / "best.keras").exists()


@pytest.mark.slow
def test_ctrl_c_is_one_line_exit_130_and_resumable(tmp_path):
    import signal
    import time

    workdir = tmp_path / "run"
    args = [sys.executable, TRAIN, "--smoke", "--verbose=0", "--checkpoint_every_steps=1"]
    args.append(f"--workdir={workdir}")
    # stderr goes to a file: a pipe nobody reads while the run is polled fills up and
    # blocks the trainer. The trainer gets SIGINT's default disposition (a job started
    # in the background by a shell without job control has it ignored).
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            args,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    deadline = time.time() + 240
    while not (workdir / "stage1" / "checkpoint").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before its first checkpoint was seen"
    process.send_signal(signal.SIGINT)
    sent = time.time()
    process.wait(timeout=120)
    err = log.read_text()
    assert process.returncode == 130, err[-2000:]
    assert time.time() - sent < 10, "Ctrl-C took too long"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "interrupted" in errors[0] and "Traceback" not in err
    resumed = subprocess.run(
        [*args, "--noevaluate", "--noexport"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from step" in resumed.stderr


def test_a_full_disk_keeps_the_old_file_and_checkpoint(tmp_path, monkeypatch):
    import errno

    from keras_oltr.runs import WriteFailedError, checkpoint, write_text_atomic

    path = tmp_path / "metrics.json"
    path.write_text("old")
    for code, words in ((errno.ENOSPC, "no space left on device"), (errno.EIO, "could not")):

        def full(tmp, *args, code=code):
            raise OSError(code, os.strerror(code), tmp)

        monkeypatch.setattr("keras_oltr.runs.atomic.fsync_tree", full)
        with pytest.raises(WriteFailedError, match=rf"{words}.* while writing {path}") as info:
            write_text_atomic(str(path), "new")
        assert info.value.__cause__ is None and info.value.__suppress_context__
        assert path.read_text() == "old" and not list(tmp_path.glob(".tmp-*"))
    monkeypatch.undo()

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    ckpt = str(tmp_path / "checkpoint")
    checkpoint.save_training_state(ckpt, model, model.optimizer, {"global_step": 1})
    saved = model.get_weights()
    model.fit(np.ones((4, 2)), np.zeros((4, 1)), verbose=0)

    def half_written(file, **values):
        with open(file, "wb") as f:
            f.write(b"PK\0")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), file)

    monkeypatch.setattr(checkpoint.np, "savez", half_written)
    with pytest.raises(WriteFailedError, match=f"no space left on device while writing {ckpt}"):
        checkpoint.save_training_state(ckpt, model, model.optimizer, {"global_step": 2})
    monkeypatch.undo()
    assert checkpoint.read_state(ckpt)["global_step"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    checkpoint.restore_training_state(ckpt, model, model.optimizer)
    for a, b in zip(model.get_weights(), saved, strict=True):
        np.testing.assert_array_equal(a, b)


# Runs the trainer with np.savez of the checkpoint failing as a full disk does, from
# its FAIL_AT-th call on (after writing half a file).
_FULL_DISK_TRAINER = """
import errno, os, sys
import numpy
from keras_oltr.runs import checkpoint

class FullDisk:
    calls = 0
    def __getattr__(self, name):
        return getattr(numpy, name)
    def savez(self, file, **values):
        FullDisk.calls += 1
        if FullDisk.calls >= int(os.environ["FAIL_AT"]):
            with open(file, "wb") as f:
                f.write(b"PK")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), file)
        return numpy.savez(file, **values)

checkpoint.np = FullDisk()
from keras_oltr.commands.train import console_main
sys.argv = ["train.py", *sys.argv[1:]]
console_main()
"""


@pytest.mark.slow
def test_disk_full_at_a_checkpoint_is_one_line_exit_2_and_resumes(tmp_path):
    args = [*COMMON, f"--workdir={tmp_path}", "--stage=1", "--noevaluate"]
    result = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_TRAINER, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env={**os.environ, "FAIL_AT": "3"},
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    ckpt = tmp_path / "stage1" / "checkpoint"
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"no space left on device while writing {ckpt}" in errors[0]
    from keras_oltr.runs import read_state

    assert read_state(str(ckpt))["global_step"] == 2  # steps 1 and 2 were written
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    resumed = _train(tmp_path, "--stage=1", "--noevaluate")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step 2" in resumed.stderr
