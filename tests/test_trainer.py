"""End-to-end tests of the two-stage trainer (trainers/train.py and its library)."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_oltr.experiment import run_experiment
from keras_oltr.presets import get_preset, smoke
from keras_oltr.runs import read_state
from keras_oltr.training import TrainingError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "trainers", "train.py")


def _run_cli(*args, timeout=600, env=None):
    return subprocess.run(
        [sys.executable, TRAIN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


def _smoke_config(**overrides):
    return dataclasses.replace(smoke(get_preset("mixed_mnist_lt")), **overrides)


@pytest.mark.slow
def test_smoke_run_writes_checkpoints_config_and_finite_metrics(tmp_path):
    result = _run_cli("--smoke", f"--workdir={tmp_path}", "--verbose=0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| plain" in result.stdout and "| oltr" in result.stdout
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["dataset"] == "mixed_mnist_lt" and config["max_steps_per_epoch"] == 3
    for stage in (1, 2):
        for name in ("best.keras", "latest.keras", "checkpoint/state.json"):
            assert (tmp_path / f"stage{stage}" / name).is_file(), (stage, name)
        state = read_state(str(tmp_path / f"stage{stage}" / "checkpoint"))
        assert state["global_step"] == 2 * 3  # 2 smoke epochs of 3 steps
        metrics = json.loads((tmp_path / "eval" / f"stage{stage}" / "metrics.json").read_text())
        closed = metrics["metrics"]["closed"]
        assert 0.0 <= closed["overall"] <= 1.0
        assert np.isfinite(metrics["metrics"]["open"]["f_measure"])
    reach = json.loads((tmp_path / "eval" / "stage2" / "metrics.json").read_text())
    assert reach["metrics"]["threshold_free"]["reachability"]["auroc"] is not None
    assert (tmp_path / "results.md").read_text().count("|") > 10
    assert list((tmp_path / "tensorboard" / "stage2").iterdir())
    # The export uses the threshold the evaluation chose on validation.
    export = json.loads(
        (
            tmp_path / "export" / "mixed_mnist_lt_smoke" / "1" / "assets.extra" / "oltr_export.json"
        ).read_text()
    )
    chosen = json.loads((tmp_path / "eval" / "stage2" / "metrics.json").read_text())
    assert export["threshold"] == chosen["metrics"]["threshold_selection"]["threshold"]
    assert export["threshold_source"].startswith("validation:")


@pytest.mark.slow
def test_smoke_run_on_jax_trains_evaluates_and_exports_with_tensorflow(tmp_path):
    # The data pipeline is tf.data; the model, fit, centroids, bank and evaluation
    # run on JAX; the SavedModel is made by a TensorFlow child process.
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = _run_cli("--smoke", f"--workdir={tmp_path}", "--verbose=0", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Exporting with TensorFlow in a child process (trained on jax)" in result.stderr
    for stage in (1, 2):
        assert read_state(str(tmp_path / f"stage{stage}" / "checkpoint"))["global_step"] == 6
        metrics = json.loads((tmp_path / "eval" / f"stage{stage}" / "metrics.json").read_text())
        assert 0.0 <= metrics["metrics"]["closed"]["overall"] <= 1.0
        assert np.isfinite(metrics["metrics"]["open"]["f_measure"])
    export = json.loads(
        (
            tmp_path / "export" / "mixed_mnist_lt_smoke" / "1" / "assets.extra" / "oltr_export.json"
        ).read_text()
    )
    chosen = json.loads((tmp_path / "eval" / "stage2" / "metrics.json").read_text())
    assert export["threshold"] == chosen["metrics"]["threshold_selection"]["threshold"]
    # The export commands say which backend they need instead of failing inside Keras.
    onnx = subprocess.run(
        [sys.executable, os.path.join(REPO, "export", "to_onnx.py"), f"--workdir={tmp_path}"]
        + [f"--out={tmp_path / 'model.onnx'}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert onnx.returncode == 2, onnx.stderr[-2000:]
    assert "KERAS_BACKEND=tensorflow" in onnx.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "model.onnx").exists()
    # tf.distribute strategies are TensorFlow's: named on JAX, one clear line.
    mirrored = _run_cli("--smoke", f"--workdir={tmp_path / 'm'}", "--strategy=mirrored", env=env)
    assert mirrored.returncode == 2, mirrored.stderr[-2000:]
    assert mirrored.stderr.strip().splitlines()[-1].startswith("error: --strategy: `strategy`")


def test_inference_function_returns_the_models_outputs_as_numpy():
    from keras_oltr.inference.batches import inference_function
    from keras_oltr.models import build_plain_model

    model = build_plain_model(3, (8, 8, 1), backbone_options={"width": 4, "stem": "small"})
    images = tf.random.stateless_uniform((5, 8, 8, 1), (1, 2), maxval=255.0)
    expected = {k: v.numpy() for k, v in model(images, training=False).items()}
    outputs = inference_function(model)(images)
    assert set(outputs) == set(expected)
    for key, value in expected.items():
        assert isinstance(outputs[key], np.ndarray)
        np.testing.assert_allclose(outputs[key], value, rtol=1e-5, atol=1e-6)
    logits = inference_function(model, "logits")(images)
    np.testing.assert_allclose(logits, expected["logits"], rtol=1e-5, atol=1e-6)


def _deferred_batch(size, channels=3):
    """A `{canvas, geometry}` batch and the host's test crops of the same images."""
    from keras_oltr import deferred_resize
    from keras_oltr.data import transforms

    rng = np.random.default_rng(0)
    # Up- and down-scaled windows, and one that shrinks by more than 2x (resampled
    # on the host, its crop carried in the canvas's bytes).
    shapes = [
        (size + 1, size + 4),
        (size + 4, size + 1),
        (3 * size // 2, 2 * size),
        (4 * size, 5 * size),
    ]
    canvases, geometries, crops = [], [], []
    for h, w in shapes:
        image = tf.constant(rng.integers(0, 256, (h, w, channels), dtype=np.uint8))
        canvas, geometry = transforms.imagenet_test_canvas(image, size)
        canvases.append(canvas.numpy())
        geometries.append(geometry.numpy())
        crops.append(transforms.imagenet_test_transform(image, size).numpy())
    assert [g[4] > 0 for g in geometries] == [True, True, True, False]
    batch = {
        deferred_resize.CANVAS_KEY: np.stack(canvases),
        deferred_resize.GEOMETRY_KEY: np.stack(geometries),
    }
    return batch, np.stack(crops)


_DEFERRED_JAX_CHECK = """
import sys
import numpy as np
from keras_oltr.models import build_plain_model
from keras_oltr.inference.batches import inference_function
data = np.load(sys.argv[1])
model = build_plain_model(3, (16, 16, 3), backbone_options={"width": 4, "stem": "small"})
plain = inference_function(model)(data["crops"])
batch = {"canvas": data["canvas"], "geometry": data["geometry"]}
deferred = inference_function(model, "logits")(batch)
np.testing.assert_allclose(deferred, plain["logits"], rtol=1e-4, atol=1e-4)
print("deferred ok")
"""


def test_inference_function_finishes_deferred_test_batches(tmp_path):
    # `{canvas, geometry}` batches (eval_dataset(defer_resize=True)) give the outputs
    # of the host's test crops, on TensorFlow (in the tf.function) and on JAX (a
    # wrapper model compiled by predict_on_batch).
    from keras_oltr.inference.batches import inference_function
    from keras_oltr.models import build_plain_model

    batch, crops = _deferred_batch(16)
    model = build_plain_model(3, (16, 16, 3), backbone_options={"width": 4, "stem": "small"})
    plain = inference_function(model)(crops)
    deferred = inference_function(model)({k: tf.constant(v) for k, v in batch.items()})
    for key, value in plain.items():
        np.testing.assert_allclose(deferred[key], value, rtol=1e-4, atol=1e-4)
    np.savez(tmp_path / "batch.npz", crops=crops, **batch)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", _DEFERRED_JAX_CHECK, str(tmp_path / "batch.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0 and "deferred ok" in result.stdout, result.stderr[-3000:]


def test_with_an_accelerator_the_model_finishes_the_test_resize(tmp_path, monkeypatch):
    # With an accelerator, evaluation passes leave the test resize to the model's
    # call: the centroids and evaluation outputs are those of the host pipeline
    # (validation goes through the same eval_batches).
    from keras_oltr import data, deferred_resize
    from keras_oltr.evaluation.evaluate import collect_top1_outputs
    from keras_oltr.inference import batches as inference
    from keras_oltr.inference import centroids
    from keras_oltr.models import build_plain_model

    files = _write_image_tree(tmp_path / "images", per_class=(6, 4, 4, 4))
    dataset = data.SplitFileDataset(
        data_root=str(tmp_path / "images"),
        split_files={k: str(v) for k, v in files.items()},
        image_size=16,
        augmentation="imagenet",
    )
    assert dataset.can_defer_resize
    model = build_plain_model(4, (16, 16, 3), backbone_options={"width": 4, "stem": "small"})

    def passes():
        x, _ = next(iter(inference.eval_batches(dataset, "test", 8)))
        means = centroids.class_mean_features(model, dataset, batch_size=8)
        top1 = collect_top1_outputs(model, inference.eval_batches(dataset, "test", 8))
        return x, means, top1

    host_x, host_means, host_top1 = passes()
    assert not isinstance(host_x, dict)
    monkeypatch.setattr(inference, "has_accelerator", lambda: True)
    step_x, step_means, step_top1 = passes()
    assert set(step_x) == {deferred_resize.CANVAS_KEY, deferred_resize.GEOMETRY_KEY}
    assert step_x[deferred_resize.CANVAS_KEY].dtype == tf.uint8
    np.testing.assert_allclose(inference.model_images(step_x), host_x, atol=1e-3)
    np.testing.assert_allclose(step_means, host_means, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(step_top1["predicted_class"], host_top1["predicted_class"])
    np.testing.assert_allclose(step_top1["max_probability"], host_top1["max_probability"], 1e-4)


def _write_image_tree(root, num_classes=4, per_class=(30, 12, 6, 4), open_classes=2):
    rng = np.random.default_rng(0)
    lines = {"train": [], "val": [], "test": [], "open": []}
    for label in range(num_classes + open_classes):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        count = per_class[label] + 4 if label < num_classes else 4
        for i in range(count):
            # Class-dependent mean so the task is learnable; PNG and JPEG mixed.
            pixels = np.clip(rng.normal(40 * label, 20, (20, 24, 3)), 0, 255).astype(np.uint8)
            ext = "png" if i % 2 else "jpg"
            path = folder / f"{i}.{ext}"
            encode = tf.io.encode_png if ext == "png" else tf.io.encode_jpeg
            path.write_bytes(encode(pixels).numpy())
            rel = f"class{label}/{i}.{ext}"
            if label >= num_classes:
                lines["open"].append(f"{rel} -1")
            elif i < 2:
                lines["val"].append(f"{rel} {label}")
            elif i < 4:
                lines["test"].append(f"{rel} {label}")
            else:
                lines["train"].append(f"{rel} {label}")
    files = {}
    for split, rows in lines.items():
        files[split] = root / f"my_{split}.txt"
        files[split].write_text("\n".join(rows) + "\n")
    return files


@pytest.mark.slow
def test_smoke_run_on_a_split_file_tree(tmp_path):
    files = _write_image_tree(tmp_path / "images")
    args = [f"--dataset_arg={k}={v}" for k, v in files.items()]
    result = _run_cli(
        "--dataset=custom",
        f"--data_root={tmp_path / 'images'}",
        *args,
        "--dataset_arg=image_size=16",
        "--smoke",
        "--batch_size=8",
        "--max_steps_per_epoch=2",
        f"--workdir={tmp_path / 'run'}",
        "--verbose=0",
        "--noexport",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"] == "custom" and config["image_size"] == 16
    metrics = json.loads((tmp_path / "run" / "eval" / "stage2" / "metrics.json").read_text())
    counts = metrics["metrics"]["counts"]
    assert counts["num_open_test"] == 8 and counts["num_known_test"] == 8


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    common = [
        "--smoke",
        "--deterministic",
        "--max_steps_per_epoch=6",
        "--checkpoint_every_steps=1",
        "--noevaluate",
        "--noexport",
        "--verbose=0",
    ]
    reference = _run_cli(*common, f"--workdir={tmp_path / 'a'}")
    assert reference.returncode == 0, reference.stderr[-3000:]

    workdir = tmp_path / "b"
    process = subprocess.Popen(
        [sys.executable, TRAIN, *common, f"--workdir={workdir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state_file = workdir / "stage1" / "checkpoint" / "state.json"
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and process.poll() is None:
        if state_file.is_file():
            step = json.loads(state_file.read_text())["global_step"]
            if step >= 2:  # mid-epoch 1 of stage 1 (6 steps per epoch)
                process.send_signal(signal.SIGKILL)
                killed_at = step
                break
        time.sleep(0.02)
    process.wait()
    assert killed_at is not None, "the run finished or stalled before it could be killed"
    assert not (workdir / "stage2" / "latest.keras").exists()

    resumed = _run_cli(*common, f"--workdir={workdir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stderr
    for stage in (1, 2):
        a = keras.saving.load_model(tmp_path / "a" / f"stage{stage}" / "latest.keras")
        b = keras.saving.load_model(workdir / f"stage{stage}" / "latest.keras")
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_array_equal(wa, wb)


@pytest.mark.slow
@pytest.mark.distributed
def test_mirrored_two_cpus_matches_one_device(tmp_path, mirrored_strategy):
    # lr 0.01: at the smoke preset's lr 0.1 the tiny network is chaotic and float
    # reduction-order differences (synchronised BN sums, all-reduces) grow quickly.
    base = _smoke_config(batch_size=16, max_steps_per_epoch=3)
    config = dataclasses.replace(
        base,
        stage1=dataclasses.replace(base.stage1, learning_rate=0.01),
        stage2=dataclasses.replace(base.stage2, learning_rate=0.01),
    )
    one_device = tf.distribute.get_strategy()
    mirrored = mirrored_strategy
    kwargs = dict(evaluate=False, export=False, verbose=0)
    single1 = run_experiment(
        config, str(tmp_path / "one"), stage="1", strategy=one_device, **kwargs
    )
    double1 = run_experiment(config, str(tmp_path / "two"), stage="1", strategy=mirrored, **kwargs)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(
            [r[key] for r in double1["stage1"]["history"]],
            [r[key] for r in single1["stage1"]["history"]],
            rtol=1e-3,
            err_msg=f"stage 1 {key}",
        )
    # Stage 2 from the same stage-1 model on both, so a different best-epoch pick
    # cannot hide or cause a difference.
    shutil.rmtree(tmp_path / "two" / "stage1")
    shutil.copytree(tmp_path / "one" / "stage1", tmp_path / "two" / "stage1")
    single2 = run_experiment(
        config, str(tmp_path / "one"), stage="2", strategy=one_device, **kwargs
    )
    double2 = run_experiment(config, str(tmp_path / "two"), stage="2", strategy=mirrored, **kwargs)
    for key in ("loss", "ce", "large_margin", "accuracy"):
        np.testing.assert_allclose(
            [r[key] for r in double2["stage2"]["history"]],
            [r[key] for r in single2["stage2"]["history"]],
            rtol=1e-3,
            err_msg=f"stage 2 {key}",
        )
    one = keras.saving.load_model(tmp_path / "one" / "stage2" / "latest.keras")
    two = keras.saving.load_model(tmp_path / "two" / "stage2" / "latest.keras")
    np.testing.assert_allclose(
        two.get_layer("meta_embedding").memory.centroids.numpy(),
        one.get_layer("meta_embedding").memory.centroids.numpy(),
        rtol=1e-3,
        atol=1e-5,
    )


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
@pytest.mark.distributed
def test_multi_worker_two_processes_agree(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], []
    for index in range(2):
        # Each worker's output goes to a file: a pipe that is not drained while the other
        # worker is waited for fills up and blocks that worker inside a collective.
        logs.append(open(tmp_path / f"worker{index}.log", "w+"))
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    TRAIN,
                    "--smoke",
                    "--strategy=multi_worker",
                    "--batch_size=16",
                    f"--workdir={tmp_path}",
                    "--noexport",
                    "--noevaluate",
                    "--verbose=0",
                ],
                cwd=REPO,
                env=env,
                stdout=logs[-1],
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for p, log in zip(procs, logs, strict=True):
        p.wait(timeout=600)
        log.seek(0)
        assert p.returncode == 0, log.read()[-3000:]
        log.close()
    chief = keras.saving.load_model(tmp_path / "stage2" / "latest.keras")
    worker = keras.saving.load_model(tmp_path / ".worker1" / "stage2" / "latest.keras")
    for a, b in zip(chief.get_weights(), worker.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert read_state(str(tmp_path / "stage2" / "checkpoint"))["global_step"] == 6


@pytest.mark.slow
@pytest.mark.distributed
def test_multi_worker_without_a_shared_workdir_stops_at_start(tmp_path):
    # Two hosts without a shared disk: each worker has its own --workdir. Both stop
    # before the first step, each with one line that says a shared disk is needed.
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, logs = [], []
    for index in range(2):
        logs.append(open(tmp_path / f"worker{index}.log", "w+"))  # a file, not a PIPE
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, TRAIN, "--smoke", "--strategy=multi_worker"]
                + ["--batch_size=16", f"--workdir={tmp_path / f'host{index}'}", "--verbose=0"],
                cwd=REPO,
                env=env,
                stdout=logs[-1],
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    last_lines = []
    for p, log in zip(procs, logs, strict=True):
        p.wait(timeout=300)
        log.seek(0)
        text = log.read()
        log.close()
        assert p.returncode == 2, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        last_lines.append(text.strip().splitlines()[-1])
    assert "1 of the 1 other worker(s) do not see" in last_lines[0], last_lines
    assert "Worker 1 does not see the files the chief wrote" in last_lines[1], last_lines
    assert all("filesystem that all hosts share" in line for line in last_lines)
    assert not (tmp_path / "host0" / "stage1").exists()  # stopped before training


def test_non_divisible_batch_for_replicas_is_a_clear_error(tmp_path, mirrored_strategy):
    with pytest.raises(TrainingError, match="batch_size=33"):
        run_experiment(_smoke_config(batch_size=33), str(tmp_path), strategy=mirrored_strategy)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset=nope"], "Unknown dataset"),
        (["--dataset=imagenet_lt"], "data_root"),
        (["--stage=2"], "stage-1 model"),
        (["--preset=nope"], "Unknown preset"),
        (["--batch_size=0"], "batch_size"),
    ],
)
def test_bad_flags_give_one_clear_error_without_traceback(tmp_path, args, message):
    result = _run_cli("--smoke", f"--workdir={tmp_path}", "--verbose=0", *args, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_attention_and_fc_train_at_the_backbone_learning_rate():
    from keras_oltr.config import StageConfig
    from keras_oltr.models import build_oltr_model
    from keras_oltr.optimizers import CoupledSGD, layer_lr_multipliers
    from keras_oltr.training.optimizer import lr_multipliers

    model = build_oltr_model(
        3, (8, 8, 1), backbone_options={"width": 2, "stem": "small"}, use_fc=True, feature_dim=4
    )
    stage = StageConfig(backbone_lr_multiplier=0.1, centroid_lr_multiplier=0.5)
    assert lr_multipliers(model, stage) == {
        "backbone": 0.1,
        "modulated_attention": 0.1,
        "feature_fc": 0.1,
        "centroids": 0.5,
    }
    optimizer = CoupledSGD(
        0.1, lr_multipliers=layer_lr_multipliers(model, lr_multipliers(model, stage))
    )
    model.compile(optimizer)
    attention = model.get_layer("modulated_attention").trainable_variables[0]
    classifier = model.get_layer("classifier").trainable_variables[0]
    centroids = model.centroid_memory.centroids
    assert optimizer.multiplier(attention) == 0.1 and optimizer.multiplier(classifier) == 1.0
    assert optimizer.multiplier(centroids) == 0.5


def test_colour_jitter_in_the_train_step_trains_as_in_the_input_pipeline(
    tmp_path, mirrored_strategy
):
    # The ImageNet-family flip + jitter applied by the model's train step (as on a
    # GPU) or by tf.data: the same images, so stage 1 ends at the same weights; also
    # with the deferred batches split over two replicas.
    from keras_oltr.data import get_dataset
    from keras_oltr.experiment import defers_jitter

    files = _write_image_tree(tmp_path / "images")
    kwargs = {k: str(v) for k, v in files.items()}
    kwargs |= {"data_root": str(tmp_path / "images"), "image_size": 16, "augmentation": "imagenet"}
    base = dataclasses.replace(
        smoke(get_preset("mixed_mnist_lt")),
        dataset="custom",
        dataset_kwargs=kwargs,
        batch_size=8,
        max_steps_per_epoch=2,
    )
    dataset = get_dataset("custom", **kwargs)
    weights = {}
    runs = [("train_step", None), ("input_pipeline", None), ("train_step", mirrored_strategy)]
    for place, strategy in runs:
        config = dataclasses.replace(base, colour_jitter_on=place)
        assert defers_jitter(config, dataset) == (place == "train_step")
        name = place + ("_mirrored" if strategy else "")
        run_experiment(
            config,
            str(tmp_path / name),
            stage="1",
            strategy=strategy,
            evaluate=False,
            export=False,
            verbose=0,
        )
        model = keras.saving.load_model(str(tmp_path / name / "stage1" / "latest.keras"))
        weights[name] = model.get_weights()
    assert not defers_jitter(dataclasses.replace(base, colour_jitter_on="auto"), dataset)
    for a, b in zip(weights["train_step"], weights["input_pipeline"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(weights["train_step_mirrored"], weights["input_pipeline"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="colour_jitter_on"):
        dataclasses.replace(base, colour_jitter_on="gpu")
