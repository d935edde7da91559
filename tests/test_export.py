"""Deployment: SavedModel (tf.saved_model.load and the session loader), TFLite, ONNX."""

import io
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_oltr.models as models
from keras_oltr import export

H, W, C = 28, 28, 1
NUM_CLASSES = 5
CLASS_NAMES = ["zero", "one", "two", "three", "four"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
NUMERIC = ("logits", "probabilities", "reachability")


def _images(n, seed):
    return np.random.default_rng(seed).uniform(0, 255, (n, H, W, C)).astype(np.float32)


def _run(args, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=REPO, timeout=300, **kwargs
    )


@pytest.fixture(scope="module")
def trained():
    """A smoke-trained OLTR model (a few SGD steps on random data, centroids set)."""
    keras.utils.set_random_seed(0)
    model = models.build_oltr_model(
        NUM_CLASSES, (H, W, C), backbone_options={"width": 8, "stem": "small"}
    )
    x = _images(64, seed=1)
    y = np.arange(64) % NUM_CLASSES
    features = model.predict(x, verbose=0)["direct_feature"]
    centroids = np.stack([features[y == k].mean(0) for k in range(NUM_CLASSES)])
    model.get_layer("meta_embedding").memory.set_centroids(centroids)
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def batch_and_reference(trained):
    x = _images(16, seed=2)
    reference = {k: np.asarray(v) for k, v in trained(x, training=False).items()}
    return x, reference


@pytest.fixture(scope="module")
def threshold(batch_and_reference):
    # The median max-probability: about half the batch is rejected, so both the
    # class path and the "unknown" path are exercised.
    _, reference = batch_and_reference
    return float(np.median(reference["probabilities"].max(-1)))


@pytest.fixture(scope="module")
def artifacts(trained, threshold, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    serving = root / "serving"
    version_dir = export.export_saved_model(
        trained, str(serving), CLASS_NAMES, threshold=threshold, version=3
    )
    tflite = export.convert_tflite(
        trained, str(root / "oltr.tflite"), CLASS_NAMES, threshold=threshold
    )
    onnx_path = export.convert_onnx(
        trained, str(root / "oltr.onnx"), CLASS_NAMES, threshold=threshold
    )
    return {
        "root": root,
        "serving": serving,
        "saved_model": version_dir,
        "tflite": tflite,
        "onnx": onnx_path,
    }


def _expected_class(reference, threshold):
    probabilities = reference["probabilities"]
    predicted = probabilities.argmax(-1)
    return np.where(probabilities.max(-1) < threshold, -1, predicted)


def _assert_parity(outputs, reference, threshold):
    for key in NUMERIC:
        np.testing.assert_allclose(outputs[key], reference[key], rtol=1e-4, atol=1e-6, err_msg=key)
    expected = _expected_class(reference, threshold)
    assert (expected == -1).any() and (expected >= 0).any()
    np.testing.assert_array_equal(outputs["predicted_class"], expected)
    np.testing.assert_allclose(
        outputs["max_probability"], reference["probabilities"].max(-1), rtol=1e-4
    )


def test_saved_model_parity_with_tf_load(artifacts, batch_and_reference, threshold):
    x, reference = batch_and_reference
    loaded = tf.saved_model.load(artifacts["saved_model"])
    outputs = {
        k: v.numpy() for k, v in loaded.signatures["serving_default"](images=tf.constant(x)).items()
    }
    _assert_parity(outputs, reference, threshold)
    assert outputs["predicted_class"].dtype == np.int64
    names = [n.decode() for n in outputs["class_name"]]
    expected = _expected_class(reference, threshold)
    assert names == [CLASS_NAMES[i] if i >= 0 else "unknown" for i in expected]


def test_saved_model_parity_with_session_loader(artifacts, batch_and_reference, threshold):
    """saved_model_cli loads through the TF1 session loader, as TF Serving does."""
    x, reference = batch_and_reference
    np.save(artifacts["root"] / "x.npy", x)
    outdir = artifacts["root"] / "cli_out"
    result = _run(
        [
            os.path.join(BIN, "saved_model_cli"),
            "run",
            "--dir",
            artifacts["saved_model"],
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"images={artifacts['root'] / 'x.npy'}",
            "--outdir",
            str(outdir),
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = {
        name[: -len(".npy")]: np.load(outdir / name, allow_pickle=True)
        for name in os.listdir(outdir)
    }
    _assert_parity(outputs, reference, threshold)
    expected = _expected_class(reference, threshold)
    assert [n.decode() for n in outputs["class_name"]] == [
        CLASS_NAMES[i] if i >= 0 else "unknown" for i in expected
    ]


@pytest.mark.parametrize("kind", ["tflite", "onnx", "saved_model"])
def test_predictor_parity(kind, artifacts, batch_and_reference, threshold):
    x, reference = batch_and_reference
    predictor = export.load_predictor(artifacts[kind])
    assert predictor.format == kind
    assert predictor.image_shape == (H, W, C)
    assert predictor.metadata.threshold == pytest.approx(threshold)
    _assert_parity(predictor.predict(x), reference, threshold)
    # Dynamic batch: one image gives the same row as in the batch.
    single = predictor.predict(x[3:4])
    np.testing.assert_allclose(single["logits"][0], reference["logits"][3], rtol=1e-4, atol=1e-6)


def test_onnx_model_properties(artifacts):
    import onnx

    proto = onnx.load(artifacts["onnx"])
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (image_input,) = proto.graph.input
    dims = image_input.type.tensor_type.shape.dim
    assert image_input.name == "images"
    assert dims[0].dim_param and not dims[0].dim_value  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [H, W, C]
    assert sorted(o.name for o in proto.graph.output) == sorted(export.NUMERIC_OUTPUTS)


def test_tflite_signature_names(artifacts):
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=artifacts["tflite"]).get_signature_list()
    assert signatures["serving_default"]["inputs"] == ["images"]
    assert sorted(signatures["serving_default"]["outputs"]) == sorted(export.NUMERIC_OUTPUTS)
    metadata = export.ExportMetadata.read(artifacts["tflite"] + ".json")
    assert metadata.class_names == tuple(CLASS_NAMES)
    assert metadata.quantization == "float32" and metadata.has_reachability


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze(-1).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_serve_encoded_matches_outside_decoding(artifacts):
    loaded = tf.saved_model.load(artifacts["saved_model"])
    default, encoded_fn = loaded.signatures["serving_default"], loaded.signatures["serve_encoded"]
    rng = np.random.default_rng(5)
    same_size = rng.integers(0, 256, (3, H, W, C)).astype(np.uint8)
    other_size = rng.integers(0, 256, (1, 40, 33, 1)).astype(np.uint8)
    rgb = rng.integers(0, 256, (36, 30, 3)).astype(np.uint8)
    jpeg = tf.io.encode_jpeg(rgb).numpy()
    encoded = [_png(im) for im in same_size] + [_png(other_size[0]), jpeg]
    # Outside the graph: PIL for the PNGs; TF's eager JPEG decoder for the JPEG (PIL's
    # decoder and its grey conversion differ from libjpeg's by a few grey levels);
    # resize as evaluation does for 28 px models (bilinear, antialiased).
    outside = [np.asarray(Image.open(io.BytesIO(e)), np.float32)[..., None] for e in encoded[:4]]
    outside[3] = tf.image.resize(outside[3], (H, W), method="bilinear", antialias=True).numpy()
    grey_jpeg = tf.cast(tf.io.decode_jpeg(jpeg, channels=1), tf.float32)
    outside.append(tf.image.resize(grey_jpeg, (H, W), method="bilinear", antialias=True).numpy())
    expected = default(images=tf.constant(np.stack(outside)))
    got = encoded_fn(encoded_images=tf.constant(encoded))
    for key in ("logits", "probabilities", "reachability"):
        np.testing.assert_allclose(got[key].numpy(), expected[key].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got["predicted_class"], expected["predicted_class"])
    np.testing.assert_array_equal(got["class_name"], expected["class_name"])


def test_tf_serving_layout(artifacts, threshold):
    serving, version_dir = artifacts["serving"], artifacts["saved_model"]
    assert os.listdir(serving) == ["oltr"]  # no staging leftovers
    assert version_dir == os.path.join(serving, "oltr", "3")
    for path in (
        "saved_model.pb",
        "variables/variables.index",
        "assets/class_names.txt",
        "assets.extra/oltr_export.json",
        "assets.extra/tf_serving_warmup_requests",
    ):
        assert os.path.isfile(os.path.join(version_dir, path)), path
    with open(os.path.join(version_dir, "assets", "class_names.txt")) as f:
        assert f.read().splitlines() == CLASS_NAMES
    with open(os.path.join(version_dir, "assets.extra", "oltr_export.json")) as f:
        metadata = json.load(f)
    assert metadata["threshold"] == pytest.approx(threshold)
    assert metadata["image_shape"] == [H, W, C] and metadata["has_reachability"] is True
    # The model directory resolves to its highest version.
    assert export.resolve_saved_model_dir(str(serving / "oltr")) == version_dir
    with pytest.raises(FileExistsError, match="version"):
        export.export_saved_model(trained_stub(), str(serving), CLASS_NAMES, version=3)


def trained_stub():
    # Any valid model: the existing-version check comes before the export itself.
    return models.build_plain_model(NUM_CLASSES, (H, W, C), backbone_options={"width": 8})


def test_saved_model_cli_show_signatures(artifacts):
    result = _run(
        [os.path.join(BIN, "saved_model_cli"), "show", "--dir", artifacts["saved_model"], "--all"]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    blocks = {}
    for block in text.split("signature_def['")[1:]:
        blocks[block.split("'")[0]] = block
    assert {"serving_default", "serve_encoded"} <= set(blocks)
    default, encoded = blocks["serving_default"], blocks["serve_encoded"]
    assert (
        "inputs['images'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 28, 28, 1)"
        in (default)
    )
    assert (
        "inputs['encoded_images'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)"
        in (encoded)
    )
    for block in (default, encoded):
        for name, dtype in [
            ("logits", "DT_FLOAT"),
            ("probabilities", "DT_FLOAT"),
            ("reachability", "DT_FLOAT"),
            ("max_probability", "DT_FLOAT"),
            ("predicted_class", "DT_INT64"),
            ("class_name", "DT_STRING"),
        ]:
            assert f"outputs['{name}'] tensor_info:\n        dtype: {dtype}" in block, name


def test_warmup_requests_parse_and_run(artifacts):
    path = os.path.join(artifacts["saved_model"], "assets.extra", "tf_serving_warmup_requests")
    logs = export.read_warmup_requests(path)
    assert len(logs) == 4
    loaded = tf.saved_model.load(artifacts["saved_model"])
    signatures = sorted(log.predict_log.request.model_spec.signature_name for log in logs)
    assert signatures == ["serve_encoded"] * 2 + ["serving_default"] * 2
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == "oltr"
        (key,) = request.inputs
        value = tf.make_ndarray(request.inputs[key])
        outputs = loaded.signatures[request.model_spec.signature_name](**{key: tf.constant(value)})
        assert outputs["logits"].shape == (len(value), NUM_CLASSES)


def test_signature_rejects_bad_inputs(artifacts):
    default = tf.saved_model.load(artifacts["saved_model"]).signatures["serving_default"]
    message = r"images.*must be float32 \[batch, 28, 28, 1\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        default(images=tf.zeros((H, W, C)))  # no batch dimension
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        default(images=tf.zeros((2, H, W, 3)))  # RGB to a grey model
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        default(images=tf.zeros((2, 32, 32, 1)))
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError), match="float"):
        default(images=tf.zeros((2, H, W, C), tf.uint8))


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_predictor_rejects_bad_inputs(kind, artifacts):
    predictor = export.load_predictor(artifacts[kind])
    with pytest.raises(ValueError, match=r"shape \[batch, 28, 28, 1\]\. Received: images.shape"):
        predictor.predict(np.zeros((H, W, C), np.float32))
    with pytest.raises(ValueError, match=r"Received: images.shape=\(2, 28, 28, 3\)"):
        predictor.predict(np.zeros((2, H, W, 3), np.float32))
    with pytest.raises(ValueError, match="float32.*Received: dtype=uint8"):
        predictor.predict(np.zeros((2, H, W, C), np.uint8))


def test_export_argument_errors(trained, tmp_path):
    with pytest.raises(ValueError, match="Received: len\\(class_names\\)=2"):
        export.export_saved_model(trained, str(tmp_path), ["a", "b"])
    with pytest.raises(ValueError, match="Received: threshold=1.5"):
        export.export_saved_model(trained, str(tmp_path), CLASS_NAMES, threshold=1.5)
    with pytest.raises(ValueError, match="Received: representative_images=None"):
        export.convert_tflite(trained, str(tmp_path / "m.tflite"), CLASS_NAMES, quantization="int8")
    with pytest.raises(ValueError, match="Received: opset=13"):
        export.convert_onnx(trained, str(tmp_path / "m.onnx"), CLASS_NAMES, opset=13)
    with pytest.raises(ValueError, match="Received: path="):
        export.load_predictor(str(tmp_path / "model.h5"))


def test_plain_model_exports_nan_reachability(tmp_path):
    plain = models.build_plain_model(NUM_CLASSES, (H, W, C), backbone_options={"width": 8})
    version_dir = export.export_saved_model(
        plain, str(tmp_path), CLASS_NAMES, threshold=0.0, warmup=False
    )
    predictor = export.load_predictor(version_dir)
    x = _images(4, seed=7)
    outputs = predictor.predict(x)
    assert np.isnan(outputs["reachability"]).all()
    assert predictor.metadata.has_reachability is False
    np.testing.assert_allclose(
        outputs["logits"], np.asarray(plain(x)["logits"]), rtol=1e-4, atol=1e-6
    )
    assert (outputs["predicted_class"] >= 0).all()  # threshold 0 rejects nothing


def test_predict_cli_reports_bad_files_and_continues(artifacts, tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_png(np.full((H, W, 1), 128, np.uint8)))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    missing = tmp_path / "missing.jpg"
    script = os.path.join(REPO, "export", "predict.py")
    files = [str(good), str(missing), str(corrupt)]
    result = _run([sys.executable, script, f"--model={artifacts['onnx']}", *files])
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(str(good)) and "probability=" in lines[0]
    assert "reachability=" in lines[0]
    # What decided: the open score by name, its value, the comparison and the threshold.
    assert re.search(r"\tmsp=[0-9.e-]+ (>=|<) threshold [0-9.e-]+\t", lines[0]), lines[0]
    assert str(missing) in result.stderr and str(corrupt) in result.stderr
    assert "ERROR" in lines[1] and "ERROR" in lines[2]

    result = _run(
        [sys.executable, script, f"--model={artifacts['serving']}/oltr", "--json", str(good)]
    )
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)
    assert document["format"] == "saved_model"
    (entry,) = document["results"]
    assert entry["error"] is None
    assert entry["class_name"] in [*CLASS_NAMES, "unknown"]
    assert 0 < entry["probability"] <= 1 and entry["reachability"] > 0
    assert document["open_score"] == entry["open_score_name"] == "msp"
    assert entry["threshold"] == document["threshold"]
    assert entry["rejected"] == (entry["class_name"] == "unknown")
    assert entry["rejected"] == (entry["open_score"] < entry["threshold"])


@pytest.mark.slow  # two exports, one in a fresh interpreter (~30 s)
def test_workdir_threshold_and_export_cli(trained, tmp_path):
    workdir = tmp_path / "run"
    (workdir / "stage2").mkdir(parents=True)
    trained.save(workdir / "stage2" / "best.keras")
    config = {"dataset": "mixed_mnist_lt", "class_names": CLASS_NAMES, "image_size": H}
    (workdir / "config.json").write_text(json.dumps(config))
    assert export.validation_threshold(str(workdir)) == (0.1, "default")
    (workdir / "eval" / "stage2").mkdir(parents=True)
    metrics = {"metrics": {"threshold_selection": {"threshold": 0.37, "val_open_f": 0.5}}}
    (workdir / "eval" / "stage2" / "metrics.json").write_text(json.dumps(metrics))
    threshold, source = export.validation_threshold(str(workdir))
    assert threshold == 0.37 and source.startswith("validation:")

    out = tmp_path / "serving"
    script = os.path.join(REPO, "export", "to_saved_model.py")
    result = _run([sys.executable, script, f"--workdir={workdir}", f"--out={out}", "--version=2"])
    assert result.returncode == 0, result.stderr[-3000:]
    metadata = export.ExportMetadata.read(export.metadata_path(os.path.join(out, "oltr", "2")))
    assert metadata.threshold == 0.37 and metadata.class_names == tuple(CLASS_NAMES)
    result = _run([sys.executable, script, f"--workdir={tmp_path}", f"--out={out}"])
    assert result.returncode == 2 and "config.json" in result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) > 10 and "Traceback" not in result.stderr


def test_file_artifacts_are_replaced_whole(trained, tmp_path, monkeypatch):
    """A failed rename keeps the previous model file; no temporary file is left."""
    from keras_oltr.export import graph

    path = str(tmp_path / "m.onnx")
    metadata = graph.export_metadata(trained, "onnx", CLASS_NAMES, threshold=0.2)
    graph.write_file_artifact(path, b"first", metadata)
    real_replace = os.replace

    def failing_replace(src, dst):
        if dst == path:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        graph.write_file_artifact(path, b"second", metadata)
    monkeypatch.undo()
    assert open(path, "rb").read() == b"first"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.onnx.json"]
    assert export.ExportMetadata.read(path + ".json").threshold == 0.2


def _by_batches(run, inputs, batch):
    """(predicted_class, open_score) of ``run`` over ``inputs`` sent ``batch`` at a time."""
    outputs = [run(inputs[i : i + batch]) for i in range(0, len(inputs), batch)]
    return (
        np.concatenate([np.asarray(o["predicted_class"]) for o in outputs]),
        np.concatenate([np.asarray(o["open_score"]) for o in outputs]),
    )


@pytest.mark.parametrize("open_score", ["nearest_neighbour", "reachability"])
def test_saved_model_and_onnx_decisions_do_not_depend_on_the_batch(trained, tmp_path, open_score):
    """Each image gets the same decision at batch 1, 2 and 16, in every SavedModel
    signature and in ONNX, with the nearest-neighbour bank in the model."""
    bank = trained.predict(_images(64, seed=1), verbose=0)["direct_feature"]
    model = models.with_nearest_neighbour_score(trained, bank)
    pixels = np.random.default_rng(11).integers(0, 256, (32, H, W, C)).astype(np.float32)
    keras_outputs = model(pixels, training=False)
    name = "knn_similarity" if open_score == "nearest_neighbour" else "reachability"
    # The median of an even count lies between two scores: about half are rejected.
    threshold = float(np.median(np.asarray(keras_outputs[name]).reshape(-1)))
    decision = {"threshold": threshold, "open_score": open_score}
    version_dir = export.export_saved_model(
        model, str(tmp_path / "serving"), CLASS_NAMES, warmup=False, **decision
    )
    onnx_path = export.convert_onnx(model, str(tmp_path / "m.onnx"), CLASS_NAMES, **decision)
    signatures = tf.saved_model.load(version_dir).signatures
    encoded = np.array([_png(image) for image in pixels], dtype=object)
    runs = {
        "serving_default": lambda x: signatures["serving_default"](images=tf.constant(x)),
        "serve_encoded": lambda x: signatures["serve_encoded"](encoded_images=tf.constant(x)),
        "saved_model predictor": export.load_predictor(version_dir).predict,
        "onnx predictor": export.load_predictor(onnx_path).predict,
    }
    for runtime, run in runs.items():
        inputs = encoded if runtime == "serve_encoded" else pixels
        one, one_scores = _by_batches(run, inputs, 1)
        for batch in (2, 16):
            many, many_scores = _by_batches(run, inputs, batch)
            np.testing.assert_array_equal(many, one, err_msg=f"{runtime} batch {batch}")
            np.testing.assert_allclose(many_scores, one_scores, rtol=1e-5, atol=1e-6)
        # The rule itself: unknown exactly where the score is below the threshold.
        np.testing.assert_array_equal(one == -1, one_scores < threshold, err_msg=runtime)
        assert 0.2 < np.mean(one == -1) < 0.8, runtime
