"""Open-set scores, their validation-only selection, and the decision rule in every runtime."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_oltr.models as models
from keras_oltr import export
from keras_oltr import open_scores as S
from keras_oltr.evaluation import evaluate as E
from keras_oltr.evaluation import metrics as M
from keras_oltr.evaluation import metrics_file as F
from keras_oltr.export import graph

H, W, C = 28, 28, 1
NUM_CLASSES = 5
CLASS_NAMES = [f"c{i}" for i in range(NUM_CLASSES)]
OLTR_NO_BANK = tuple(n for n in S.OLTR_SCORES if n != "nearest_neighbour")


def _images(n, seed):
    return np.random.default_rng(seed).uniform(0, 255, (n, H, W, C)).astype(np.float32)


@pytest.fixture(scope="module")
def oltr():
    """A tiny OLTR model with centroids at class means of random images."""
    keras.utils.set_random_seed(0)
    model = models.build_oltr_model(
        NUM_CLASSES, (H, W, C), backbone_options={"width": 8, "stem": "small"}
    )
    x = _images(40, seed=1)
    y = np.arange(40) % NUM_CLASSES
    features = np.asarray(model(x, training=False)["direct_feature"])
    centroids = np.stack([features[y == k].mean(0) for k in range(NUM_CLASSES)])
    model.get_layer("meta_embedding").memory.set_centroids(centroids)
    return model


@pytest.fixture(scope="module")
def outputs(oltr):
    x = _images(12, seed=2)
    return x, {k: np.asarray(v) for k, v in oltr(x, training=False).items()}


def _np(value):
    return np.asarray(keras.ops.convert_to_numpy(value), np.float64)


def _logsumexp(z):
    top = z.max(-1)
    return top + np.log(np.exp(z - top[:, None]).sum(-1))


def test_plain_scores_against_numpy(outputs):
    _, out = outputs
    logits = out["logits"].astype(np.float64)
    np.testing.assert_allclose(_np(S.compute_score("energy", out)), _logsumexp(logits), rtol=1e-5)
    np.testing.assert_allclose(_np(S.compute_score("max_logit", out)), logits.max(-1), rtol=1e-6)
    np.testing.assert_allclose(
        _np(S.compute_score("msp", out)), out["probabilities"].max(-1), rtol=1e-6
    )


def test_oltr_geometry_scores_against_numpy(oltr, outputs):
    _, out = outputs
    context = S.score_context(oltr)
    centroids = np.asarray(context["centroids"], np.float64)
    feature = out["direct_feature"].astype(np.float64)
    # Independent form: 1 - d^2 / 2 of the nearest unit-sphere distance.
    unit_f = feature / np.linalg.norm(feature, axis=1, keepdims=True)
    unit_c = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    d2 = ((unit_f[:, None, :] - unit_c[None]) ** 2).sum(-1).min(-1)
    np.testing.assert_allclose(
        _np(S.compute_score("reachability_l2", out, context)), 1 - d2 / 2, atol=1e-5
    )
    # Max cosine logit: scale * cos(v_meta, w_k) with the classifier's own rows.
    classifier = oltr.get_layer("classifier")
    kernel = np.asarray(classifier.kernel, np.float64)
    meta = out["meta_embedding"].astype(np.float64)
    cosine = (meta / np.linalg.norm(meta, axis=1, keepdims=True)) @ (
        kernel / np.linalg.norm(kernel, axis=1, keepdims=True)
    ).T
    np.testing.assert_allclose(
        _np(S.compute_score("max_cosine", out, context)),
        classifier.scale * cosine.max(-1),
        rtol=1e-4,
    )
    np.testing.assert_allclose(
        _np(S.compute_score("reachability", out, context)), out["reachability"], rtol=1e-6
    )
    # Without a nearest-neighbour bank, every OLTR score but that one.
    assert S.available_scores(out, context) == OLTR_NO_BANK
    assert S.available_scores({"logits": 0, "probabilities": 0}, {}) == S.PLAIN_SCORES


@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0])
def test_msp_rescaled_equals_rerunning_with_that_scale(oltr, outputs, scale):
    """The closed form from the outputs at s = 10 equals the model rerun with s'."""
    x, out = outputs
    layer = oltr.get_layer("meta_embedding")
    trained = layer.reachability_scale
    context = S.score_context(oltr)
    predicted = _np(S.compute_score("msp_rescaled", out, context, scale=scale))
    try:
        layer.reachability_scale = scale
        rerun = {k: np.asarray(v) for k, v in oltr(x, training=False).items()}
    finally:
        layer.reachability_scale = trained
    np.testing.assert_allclose(
        _np(S.rescaled_logits(out, trained, scale)), rerun["logits"], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(predicted, rerun["probabilities"].max(-1), rtol=1e-4)
    if scale != trained:  # the score really moves with s'
        assert np.abs(predicted - out["probabilities"].max(-1)).max() > 1e-3


def _decision_inputs():
    probabilities = np.array(
        [
            [0.2, 0.5, 0.3],
            [0.4, 0.4, 0.2],  # tie in the argmax: lowest index
            [np.nan, 0.5, 0.5],  # NaN row: unknown even with a high score
            [np.inf, 0.0, 0.0],
            [0.1, 0.1, 0.8],
            [0.3, 0.3, 0.4],
            [0.6, 0.2, 0.2],
            [0.6, 0.2, 0.2],
        ],
        np.float32,
    )
    score = np.array([0.5, 0.4, 0.9, 0.9, np.nan, 0.3, np.inf, -np.inf], np.float32)
    return probabilities, score


def _graph_decision(probabilities, score, threshold):
    """The decision as the exported graph computes it (a traced tf.function)."""

    @tf.function
    def decide(p, s):
        return graph.open_set_outputs(
            {"probabilities": p, "logits": tf.math.log(p), "reachability": s},
            threshold,
            open_score="reachability",
        )["predicted_class"]

    return decide(tf.constant(probabilities), tf.constant(score)).numpy()


@pytest.mark.parametrize("threshold", [0.3, 0.4, 0.0, -5.0])
def test_decision_rule_host_equals_graph(threshold):
    probabilities, score = _decision_inputs()
    predicted, valid = S.top1(probabilities)
    numpy_result = S.decide_numpy(predicted, score, threshold, valid=valid)
    graph_result = _graph_decision(probabilities, score, threshold)
    np.testing.assert_array_equal(numpy_result, graph_result)
    # Hand-written expectations at 0.4: a score equal to the threshold is kept.
    if threshold == 0.4:
        np.testing.assert_array_equal(numpy_result, [1, 0, -1, -1, -1, -1, -1, -1])


def test_decision_compares_in_float32_in_every_form():
    # A float64 threshold between two float32 values: a score equal to its float32
    # rounding is kept by the host form and the graph form alike.
    threshold = float(np.float32(0.3)) + 1e-12
    assert np.float32(threshold) == np.float32(0.3) and threshold > float(np.float32(0.3))
    probabilities = np.array([[0.2, 0.8], [0.9, 0.1]], np.float32)
    score = np.array([0.3, np.nextafter(np.float32(0.3), np.float32(0))], np.float32)
    host = S.decide_numpy([1, 0], score, threshold, valid=[True, True])
    graph_form = _graph_decision(probabilities, score, threshold)
    np.testing.assert_array_equal(host, [1, -1])
    np.testing.assert_array_equal(graph_form, [1, -1])


def test_select_score_threshold_hand_computed():
    # Energy-like scores (negative values): known correct / known wrong / open.
    labels = np.array([0, 1, 2, 0, -1, -1])
    predicted = np.array([0, 1, 0, 0, 1, 2])
    score = np.array([-1.0, -2.0, -3.0, -2.0, -2.5, -4.0])
    # t = -2: TP 3 (scores -1, -2, -2), FP 1, FN 0 -> F = 2*0.75*1 / 1.75.
    chosen = M.select_score_threshold(predicted, score, labels)
    assert chosen["threshold"] == -2.0
    assert chosen["open_f"] == pytest.approx(2 * 0.75 / 1.75)
    # A NaN score never counts as accepted, and is never a candidate.
    chosen = M.select_score_threshold(predicted, np.r_[score[:5], np.nan], labels)
    assert chosen["threshold"] == -2.0 and chosen["num_open"] == 2
    # Ties in F go to the lowest threshold: no open images -> accept everything.
    chosen = M.select_score_threshold(predicted[:4], score[:4], labels[:4])
    assert chosen["threshold"] == -3.0 and chosen["used_open"] is False


def test_choose_open_score_prefers_best_val_f_and_msp_on_ties():
    labels = np.array([0, 1, 0, 1, -1, -1])
    predicted = np.array([0, 1, 0, 1, 0, 1])
    mixed = np.array([0.9, 0.2, 0.8, 0.7, 0.6, 0.3])  # open in between known
    separating = np.array([5.0, 4.0, 6.0, 4.5, 1.0, 0.5])
    choice = M.choose_open_score(
        predicted,
        {
            "msp": mixed,
            "energy": separating,
            "msp_rescaled@0.1": mixed,
            "msp_rescaled@1": separating,
        },
        labels,
    )
    assert choice["per_score"]["msp_rescaled"]["score_params"] == {"reachability_scale": 1.0}
    # msp_rescaled (earlier in OLTR_SCORES) and energy tie at F = 1.
    assert choice["chosen"]["score"] == "msp_rescaled"
    assert choice["chosen"]["open_f"] == 1.0 and choice["chosen"]["threshold"] == 4.0
    tied = M.choose_open_score(predicted, {"msp": mixed, "energy": mixed}, labels)
    assert tied["chosen"]["score"] == "msp"


class _Dataset:
    name = "tiny_open"
    train_counts = np.array([200, 150, 50, 10, 5])
    class_names = CLASS_NAMES

    def __init__(self, splits=("test", "open", "val", "open_val")):
        sizes = {"test": 20, "open": 10, "val": 15, "open_val": 5}
        self._data = {}
        for index, split in enumerate(splits):
            n = sizes[split]
            labels = np.full(n, -1) if split.startswith("open") else np.arange(n) % NUM_CLASSES
            self._data[split] = (_images(n, seed=10 + index), labels.astype("int32"))

    def has_split(self, split):
        return split in self._data

    def eval_dataset(self, split, batch_size):
        return tf.data.Dataset.from_tensor_slices(self._data[split]).batch(batch_size)


def test_evaluate_model_reports_every_score_and_the_val_choice(oltr, tmp_path):
    dataset = _Dataset()
    metrics = E.evaluate_model(oltr, dataset, str(tmp_path), batch_size=8)
    table = metrics.open_scores
    assert list(table.scores) == list(OLTR_NO_BANK)
    assert sorted(float(s) for s in table.scale_grid) == sorted(S.DEFAULT_SCALE_GRID)
    selection = metrics.threshold_selection
    assert selection.score == table.chosen and selection.used_open_val is True
    assert selection.threshold == table.scores[selection.score].val_threshold
    # Recompute the energy row independently from the model's outputs.
    images = np.concatenate([dataset._data[s][0] for s in ("test", "open")])
    labels = np.concatenate([dataset._data[s][1] for s in ("test", "open")])
    energy = _logsumexp(np.asarray(oltr(images)["logits"], np.float64))
    assert table.scores["energy"].auroc == pytest.approx(M.auroc(labels < 0, -energy), abs=1e-6)
    # The test F at the chosen rule equals the decision rule applied by hand.
    out = oltr(images)
    probabilities = np.asarray(out["probabilities"])
    if selection.score == "msp_rescaled":
        chosen_score = S.compute_score(
            "msp_rescaled",
            out,
            S.score_context(oltr),
            scale=selection.score_params["reachability_scale"],
        )
    else:
        chosen_score = S.compute_score(selection.score, out, S.score_context(oltr))
    decided = S.decide_numpy(probabilities.argmax(-1), _np(chosen_score), selection.threshold)
    expected = M.open_set_metrics_from_decisions(
        decided, probabilities.argmax(-1), labels, dataset.train_counts
    )
    assert selection.test.f_measure == pytest.approx(expected["f_measure"], abs=1e-9)
    report = (tmp_path / "report.md").read_text()
    assert "## Open scores of oltr" in report and "**chosen**" in report
    document = F.load_metrics_json(str(tmp_path / "metrics.json"))
    assert document.metrics.threshold_selection.score == selection.score


def test_plain_model_and_no_open_val_are_said(tmp_path):
    plain = models.build_plain_model(
        NUM_CLASSES, (H, W, C), backbone_options={"width": 8, "stem": "small"}
    )
    metrics = E.evaluate_model(
        plain, _Dataset(splits=("test", "open", "val")), str(tmp_path), model_name="plain"
    )
    assert list(metrics.open_scores.scores) == list(S.PLAIN_SCORES)
    assert metrics.open_scores.scale_grid == {}
    selection = metrics.threshold_selection
    assert selection.used_open_val is False
    assert "no open validation data was used" in selection.open_val_note
    assert "no open validation data was used" in (tmp_path / "report.md").read_text()


@pytest.fixture(scope="module")
def rescaled_artifacts(oltr, tmp_path_factory):
    """The three formats deciding with msp_rescaled at s' = 1, threshold at its median."""
    root = tmp_path_factory.mktemp("rescaled")
    x = _images(16, seed=3)
    out = oltr(x, training=False)
    score = _np(S.compute_score("msp_rescaled", out, S.score_context(oltr), scale=1.0))
    threshold = float(np.median(score))
    kwargs = {
        "threshold": threshold,
        "open_score": "msp_rescaled",
        "score_params": {"reachability_scale": 1.0},
        "open_validation": S.__name__,
    }
    paths = {
        "saved_model": export.export_saved_model(
            oltr, str(root / "serving"), CLASS_NAMES, warmup=False, **kwargs
        ),
        "tflite": export.convert_tflite(oltr, str(root / "m.tflite"), CLASS_NAMES, **kwargs),
        "onnx": export.convert_onnx(oltr, str(root / "m.onnx"), CLASS_NAMES, **kwargs),
    }
    probabilities = np.asarray(out["probabilities"])
    expected = S.decide_numpy(probabilities.argmax(-1), score, threshold)
    assert (expected == -1).any() and (expected >= 0).any()
    return paths, x, score, expected


def _raw_runtime(kind, path):
    """The runtime itself (no predictor checks): images -> outputs dict of numpy arrays."""
    if kind == "saved_model":
        signature = tf.saved_model.load(path).signatures["serving_default"]
        return lambda x: {k: v.numpy() for k, v in signature(images=tf.constant(x)).items()}
    if kind == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=path).get_signature_runner("serving_default")
        return lambda x: runner(images=x)
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return lambda x: dict(zip(names, session.run(names, {"images": x}), strict=True))


@pytest.mark.parametrize("kind", ["saved_model", "tflite", "onnx"])
def test_exported_rule_uses_the_chosen_score(kind, rescaled_artifacts):
    paths, x, score, expected = rescaled_artifacts
    predictor = export.load_predictor(paths[kind])
    assert predictor.metadata.open_score == "msp_rescaled"
    assert predictor.metadata.score_params == {"reachability_scale": 1.0}
    result = predictor.predict(x)
    np.testing.assert_allclose(result["open_score"], score, rtol=1e-4)
    np.testing.assert_array_equal(result["predicted_class"], expected)
    assert result["class_name"] == [predictor.metadata.class_name(i) for i in expected]


@pytest.mark.parametrize("kind", ["saved_model", "tflite", "onnx"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e38])
def test_non_finite_inputs_are_unknown_in_every_runtime(kind, bad, rescaled_artifacts):
    paths, x, _, _ = rescaled_artifacts
    run = _raw_runtime(kind, paths[kind])
    images = x[:3].copy()
    images[0, 0, 0, 0] = bad  # one bad pixel
    images[1] = bad  # a whole bad image
    outputs = run(images)
    predicted = np.asarray(outputs["predicted_class"])
    finite = np.isfinite(np.asarray(outputs["probabilities"])).all(-1) & np.isfinite(
        np.asarray(outputs["open_score"])
    )
    assert (predicted[~finite] == -1).all()
    assert not finite[1] or bad == 1e38  # NaN/inf images do give non-finite outputs
    # The third image is untouched and keeps its decision.
    clean = np.asarray(run(x[2:3])["predicted_class"])
    assert predicted[2] == clean[0]


def test_workdir_export_reads_the_chosen_score(oltr, tmp_path):
    workdir = tmp_path / "run"
    (workdir / "stage2").mkdir(parents=True)
    oltr.save(workdir / "stage2" / "best.keras")
    config = {"dataset": "mixed_mnist_lt", "class_names": CLASS_NAMES, "image_size": H}
    (workdir / "config.json").write_text(json.dumps(config))
    (workdir / "eval" / "stage2").mkdir(parents=True)
    selection = {
        "score": "energy",
        "score_params": {},
        "threshold": 1.25,
        "val_open_f": 0.5,
        "used_open_val": False,
        "open_val_note": M.OPEN_VAL_NOTE[False],
    }
    (workdir / "eval" / "stage2" / "metrics.json").write_text(
        json.dumps({"metrics": {"threshold_selection": selection}})
    )
    trained = export.load_workdir_model(str(workdir))
    assert (trained.open_score, trained.threshold) == ("energy", 1.25)
    path = export.convert_onnx(
        trained.model, str(tmp_path / "m.onnx"), CLASS_NAMES, **trained.decision_kwargs()
    )
    metadata = export.ExportMetadata.read(path + ".json")
    assert metadata.open_score == "energy" and metadata.threshold == 1.25
    assert "no open validation data was used" in metadata.open_validation
    x = _images(6, seed=4)
    result = export.load_predictor(path).predict(x)
    energy = _logsumexp(np.asarray(oltr(x)["logits"], np.float64))
    np.testing.assert_allclose(result["open_score"], energy, rtol=1e-4)
    expected = np.where(energy >= 1.25, np.asarray(oltr(x)["probabilities"]).argmax(-1), -1)
    np.testing.assert_array_equal(result["predicted_class"], expected)
