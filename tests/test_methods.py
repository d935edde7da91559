"""The stage-2 long-tail methods: cRT, LWS, tau-norm, logit adjustment, Balanced Softmax.

One stage 1 is trained once (on a tiny in-memory long-tailed dataset) and copied
into each method's workdir, as `benchmarks/quality.py` does. Each method's
transformation is checked against a numpy formula written here, the frozen parts
byte for byte, tau's validation choice, the SavedModel's parity with the Keras model,
and every method's stage 2 killed mid-way resumes to the uninterrupted run's weights.
"""

import dataclasses
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_oltr import export
from keras_oltr.data import ArrayDataset, register_dataset
from keras_oltr.experiment import run_experiment
from keras_oltr.layers import ClassScale, LogitAdjustment, TauNormalisedDense
from keras_oltr.methods import configure_method, list_methods
from keras_oltr.methods.post_hoc import LOGIT_ADJUST_GRID, TAU_NORM_GRID
from keras_oltr.models import load_stage_model
from keras_oltr.presets import get_preset, smoke
from keras_oltr.runs import Workdir, read_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COUNTS = (40, 24, 12, 8, 5, 3)  # train images per class: a long tail
NEW_METHODS = ("crt", "lws", "tau_norm", "logit_adjust", "balanced_softmax")


def _toy_split(rng, counts, size=16):
    """Class k: a bright 4x4 square at a class-specific place on noise."""
    labels = np.repeat(np.arange(len(counts)), counts)
    images = rng.integers(0, 80, (len(labels), size, size, 1)).astype(np.uint8)
    for i, k in enumerate(labels):
        row, col = divmod(int(k), 3)
        images[i, 2 + 6 * row : 6 + 6 * row, 1 + 5 * col : 5 + 5 * col] = 230
    return images, labels


@register_dataset("methods_toy")
def _methods_toy(*, test_seed=0):
    rng = np.random.default_rng(0)
    splits = {
        "train": _toy_split(rng, COUNTS),
        "val": _toy_split(rng, (5,) * len(COUNTS)),
        "open": (rng.integers(0, 255, (12, 16, 16, 1)).astype(np.uint8), None),
        "open_val": (rng.integers(0, 255, (12, 16, 16, 1)).astype(np.uint8), None),
    }
    splits["test"] = _toy_split(np.random.default_rng(100 + test_seed), (5,) * len(COUNTS))
    return ArrayDataset(
        splits,
        class_names=[f"c{k}" for k in range(len(COUNTS))],
        name="methods_toy",
        horizontal_flip=False,
    )


def _config(method, **dataset_kwargs):
    base = dataclasses.replace(
        get_preset("mixed_mnist_lt"), dataset="methods_toy", dataset_kwargs=dataset_kwargs
    )
    config = smoke(configure_method(base, method))
    # One epoch of 5 steps per stage (0 for the methods that do not train).
    stage1 = dataclasses.replace(config.stage1, epochs=1)
    stage2 = dataclasses.replace(config.stage2, epochs=min(config.stage2.epochs, 1))
    return dataclasses.replace(
        config,
        stage1=stage1,
        stage2=stage2,
        batch_size=16,
        eval_batch_size=64,
        max_steps_per_epoch=0,
    )


def _run_method(stage1_root, root, method, **kwargs):
    """Stage 2 of ``method`` in ``root``, on a copy of the shared stage 1."""
    shutil.copytree(os.path.join(stage1_root, "stage1"), os.path.join(root, "stage1"))
    config = _config(method, **kwargs.pop("dataset_kwargs", {}))
    config = dataclasses.replace(config, **kwargs)
    summary = run_experiment(config, root, stage="2", evaluate=False, export=False, verbose=0)
    return Workdir(root), summary["stage2"]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("stage1"))
    run_experiment(_config("oltr"), root, stage="1", evaluate=False, export=False, verbose=0)
    return root


@pytest.fixture(scope="module")
def runs(stage1, tmp_path_factory):
    """{method: (workdir, stage-2 state)} of every new method on the shared stage 1."""
    return {m: _run_method(stage1, str(tmp_path_factory.mktemp(m)), m) for m in NEW_METHODS}


@pytest.fixture(scope="module")
def val_batch(stage1):
    """(val images, labels, stage-1 outputs on them)."""
    dataset = _methods_toy()
    images = dataset.split_images("val").astype(np.float32)
    labels = np.repeat(np.arange(len(COUNTS)), 5)
    outputs = load_stage_model(stage1, 1)(images, training=False)
    return images, labels, {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


def _np_tau_norm(kernel, tau):
    norms = np.linalg.norm(kernel.astype(np.float64), axis=0, keepdims=True)
    return kernel / norms**tau


def _weights(model, layer):
    return [np.asarray(w) for w in model.get_layer(layer).get_weights()]


def _assert_identical(a, b, what):
    assert len(a) == len(b) and a, what
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb, err_msg=what)


def test_every_method_is_registered_with_its_schedule():
    assert set(NEW_METHODS) | {"oltr"} <= set(list_methods())
    base = get_preset("imagenet_lt")
    crt, lws = configure_method(base, "crt").stage2, configure_method(base, "lws").stage2
    # Kang et al.'s ImageNet-LT schedule: 10 / 5 epochs, cosine, lr 0.2 at batch 512.
    assert (crt.epochs, lws.epochs) == (10, 5)
    assert crt.schedule == "cosine" and crt.sampler == "class_aware" and crt.freeze_backbone
    assert crt.learning_rate == pytest.approx(0.2 * base.batch_size / 512)
    balanced = configure_method(base, "balanced_softmax").stage2
    assert balanced.tau == 1.0 and balanced.sampler == "random"
    assert configure_method(base, "tau_norm").stage2.epochs == 0
    assert configure_method(base, "oltr").stage2 == base.stage2
    with pytest.raises(ValueError, match=r"Unknown method.*'crt'.*Received: --method='nope'"):
        configure_method(base, "nope")


def test_layers_match_numpy_and_reload(tmp_path):
    rng = np.random.default_rng(3)
    x, logits = rng.normal(size=(4, 7)).astype("float32"), rng.normal(size=(4, 5))
    logits = logits.astype("float32")
    kernel = rng.normal(size=(7, 5)).astype("float32")
    log_prior = np.log(np.array([0.5, 0.2, 0.15, 0.1, 0.05], "float32"))

    tau_dense = TauNormalisedDense(5, tau=0.7)
    tau_dense.build((None, 7))
    tau_dense.set_kernel(kernel)
    np.testing.assert_allclose(tau_dense(x), x @ _np_tau_norm(kernel, 0.7), rtol=1e-5, atol=1e-6)
    adjust = LogitAdjustment(tau=1.5)
    adjust.build((None, 5))
    adjust.set_log_prior(log_prior)
    np.testing.assert_allclose(adjust(logits), logits - 1.5 * log_prior, rtol=1e-6)
    scale = ClassScale()
    scale.build((None, 5))
    scale.scale.assign(np.arange(1, 6, dtype="float32"))
    np.testing.assert_allclose(scale(logits), logits * np.arange(1, 6), rtol=1e-6)
    assert len(scale.trainable_weights) == 1
    assert not tau_dense.trainable_weights and not adjust.trainable_weights

    inputs = keras.Input((7,))
    head = TauNormalisedDense(5, tau=0.7, name="classifier")
    out = ClassScale()(LogitAdjustment(tau=1.5)(head(inputs)))
    model = keras.Model(inputs, out)
    head.set_kernel(kernel)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(reloaded(x), model(x))
    with pytest.raises(ValueError, match="tau"):
        TauNormalisedDense(5, tau=1.5)
    with pytest.raises(ValueError, match="tau"):
        LogitAdjustment(tau=-1)


def test_crt_retrains_only_the_classifier(stage1, runs):
    before, after = load_stage_model(stage1, 1), load_stage_model(runs["crt"][0], 2)
    _assert_identical(_weights(before, "backbone"), _weights(after, "backbone"), "backbone")
    assert not np.allclose(_weights(before, "classifier")[0], _weights(after, "classifier")[0])
    state = read_state(runs["crt"][0].checkpoint_dir(2))
    assert state["global_step"] > 0
    assert set(after.output) >= {"logits", "probabilities", "direct_feature", "knn_similarity"}


def test_balanced_softmax_fine_tunes_the_classifier(stage1, runs):
    before, after = load_stage_model(stage1, 1), load_stage_model(runs["balanced_softmax"][0], 2)
    _assert_identical(_weights(before, "backbone"), _weights(after, "backbone"), "backbone")
    assert not np.allclose(_weights(before, "classifier")[0], _weights(after, "classifier")[0])


def test_lws_learns_a_class_scale_on_frozen_logits(stage1, runs, val_batch):
    images, _, reference = val_batch
    before, after = load_stage_model(stage1, 1), load_stage_model(runs["lws"][0], 2)
    for layer in ("backbone", "classifier"):
        _assert_identical(_weights(before, layer), _weights(after, layer), layer)
    scale = _weights(after, "class_scale")[0]
    assert not np.allclose(scale, 1.0)  # trained
    logits = keras.ops.convert_to_numpy(after(images, training=False)["logits"])
    np.testing.assert_allclose(logits, scale * reference["logits"], rtol=1e-5, atol=1e-5)


def test_tau_norm_is_the_normalised_stage1_classifier(stage1, runs, val_batch):
    images, labels, reference = val_batch
    before, after = load_stage_model(stage1, 1), load_stage_model(runs["tau_norm"][0], 2)
    _assert_identical(_weights(before, "backbone"), _weights(after, "backbone"), "backbone")
    kernel = _weights(before, "classifier")[0]
    tau = after.get_layer("classifier").tau
    state = runs["tau_norm"][1]
    assert tau in TAU_NORM_GRID and tau == state["tau"]
    expected = reference["direct_feature"] @ _np_tau_norm(kernel, tau)  # bias dropped
    outputs = after(images, training=False)
    np.testing.assert_allclose(outputs["logits"], expected, rtol=1e-4, atol=1e-5)
    # The choice is the validation accuracy of each tau, best first, ties nearest 1.
    for t in TAU_NORM_GRID:
        predicted = (reference["direct_feature"] @ _np_tau_norm(kernel, t)).argmax(-1)
        assert state["val_accuracy_per_tau"][t] == pytest.approx(np.mean(predicted == labels))
    best = max(state["val_accuracy_per_tau"].values())
    assert state["val_accuracy_per_tau"][tau] == best
    assert read_state(runs["tau_norm"][0].checkpoint_dir(2))["global_step"] == 0


def test_logit_adjust_subtracts_tau_log_prior(stage1, runs, val_batch):
    images, labels, reference = val_batch
    after = load_stage_model(runs["logit_adjust"][0], 2)
    tau = after.get_layer("logit_adjustment").tau
    state = runs["logit_adjust"][1]
    assert tau in LOGIT_ADJUST_GRID and tau == state["tau"]
    prior = np.array(COUNTS, np.float64) / sum(COUNTS)
    expected = reference["logits"] - tau * np.log(prior)
    outputs = after(images, training=False)
    np.testing.assert_allclose(outputs["logits"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        outputs["probabilities"],
        keras.ops.convert_to_numpy(keras.ops.softmax(expected)),
        rtol=1e-5,
        atol=1e-6,
    )
    for t in LOGIT_ADJUST_GRID:
        predicted = (reference["logits"] - t * np.log(prior)).argmax(-1)
        assert state["val_accuracy_per_tau"][t] == pytest.approx(np.mean(predicted == labels))


def test_tau_choice_is_reproducible_and_ignores_the_test_split(stage1, runs, tmp_path):
    # A second run, on a dataset whose test split differs, chooses the same tau.
    first = runs["tau_norm"]
    workdir, state = _run_method(
        stage1, str(tmp_path / "test"), "tau_norm", dataset_kwargs={"test_seed": 1}
    )
    assert state["tau"] == first[1]["tau"]
    assert state["val_accuracy_per_tau"] == first[1]["val_accuracy_per_tau"]
    _assert_identical(
        load_stage_model(workdir, 2).get_weights(),
        load_stage_model(first[0], 2).get_weights(),
        "tau_norm model",
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", NEW_METHODS)
def test_saved_model_gives_the_keras_predictions(method, runs, val_batch, tmp_path):
    images, _, _ = val_batch
    model = load_stage_model(runs[method][0], 2)
    reference = {k: np.asarray(v) for k, v in model(images, training=False).items()}
    threshold = float(np.median(reference["probabilities"].max(-1)))
    path = export.export_saved_model(
        model,
        str(tmp_path),
        [f"c{k}" for k in range(len(COUNTS))],
        threshold=threshold,
        warmup=False,
    )
    outputs = export.load_predictor(path).predict(images)
    for key in ("logits", "probabilities"):
        np.testing.assert_allclose(outputs[key], reference[key], rtol=1e-4, atol=1e-5)
    probabilities = reference["probabilities"]
    expected = np.where(probabilities.max(-1) < threshold, -1, probabilities.argmax(-1))
    np.testing.assert_array_equal(outputs["predicted_class"], expected)


@pytest.mark.slow
def test_tau_norm_exports_to_tflite_and_onnx(runs, val_batch, tmp_path):
    # tau-norm's power of the class norms is in the graph of every format.
    images, _, _ = val_batch
    model = load_stage_model(runs["tau_norm"][0], 2)
    reference = keras.ops.convert_to_numpy(model(images, training=False)["logits"])
    names = [f"c{k}" for k in range(len(COUNTS))]
    for path in (
        export.convert_tflite(model, str(tmp_path / "m.tflite"), names),
        export.convert_onnx(model, str(tmp_path / "m.onnx"), names),
    ):
        logits = export.load_predictor(path).predict(images)["logits"]
        np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-5, err_msg=path)


class _Killed(Exception):
    pass


# (method, write point, its hit that is killed): the trained methods at their third
# step checkpoint, the post-hoc ones (no training) where they write their model.
KILLS = (
    ("crt", "checkpoint", 3),
    ("lws", "checkpoint", 3),
    ("balanced_softmax", "checkpoint", 3),
    ("tau_norm", "best", 1),
    ("logit_adjust", "latest", 1),
)


@pytest.mark.parametrize("method, point, hit", KILLS, ids=[k[0] for k in KILLS])
def test_a_method_resumes_after_a_kill_to_the_same_weights(
    method, point, hit, stage1, runs, tmp_path, monkeypatch
):
    from keras_oltr.runs import atomic, checkpoint

    hits = []

    def kill(name):
        if name == point:
            hits.append(name)
            if len(hits) == hit:
                raise _Killed()  # after the temporary is written, before the rename

    monkeypatch.setattr(checkpoint, "fault_point", kill)
    monkeypatch.setattr(atomic, "fault_point", kill)
    root = str(tmp_path / method)
    with pytest.raises(_Killed):
        _run_method(stage1, root, method, checkpoint_every_steps=1)
    workdir = Workdir(root)
    assert not os.path.exists(workdir.model_path(2, "latest"))
    if point == "checkpoint":
        assert read_state(workdir.checkpoint_dir(2))["global_step"] == hit - 1
    monkeypatch.undo()
    config = dataclasses.replace(_config(method), checkpoint_every_steps=1)
    run_experiment(config, root, stage="2", evaluate=False, export=False, verbose=0)
    reference = load_stage_model(runs[method][0], 2, "latest").get_weights()
    resumed = load_stage_model(workdir, 2, "latest").get_weights()
    _assert_identical(reference, resumed, f"resumed {method}")


@pytest.mark.slow
def test_the_trainer_cli_takes_the_method_and_its_schedule(tmp_path):
    train = os.path.join(REPO, "trainers", "train.py")

    def cli(*args):
        return subprocess.run(
            [sys.executable, train, "--smoke", f"--workdir={tmp_path}", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )

    result = cli("--method=lws", "--stage2_lr=0.5", "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"method": "lws"' in result.stdout and '"schedule": "cosine"' in result.stdout
    assert '"learning_rate": 0.5' in result.stdout  # the override is applied last
    result = cli("--method=nope")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "Unknown method" in last and "tau_norm" in last and "Traceback" not in result.stderr


def test_a_workdir_switches_its_stage2_method_only_when_stage2_starts_over(tmp_path):
    from keras_oltr.runs import ConfigMismatchError

    run = Workdir(tmp_path)
    run.write_config(_config("oltr"))
    with pytest.raises(ConfigMismatchError, match="method: 'oltr' -> 'crt'"):
        run.write_config(_config("crt"))
    run.write_config(_config("crt"), resume=False, stage="2")  # stage 1 stays
    assert run.read_config_document()["method"] == "crt"
    assert (run.stage_name(1, "crt"), run.stage_name(2, "crt"), run.stage_name(2)) == (
        "plain",
        "crt",
        "oltr",
    )
