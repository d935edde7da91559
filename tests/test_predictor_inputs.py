"""Bad and hostile inputs to the deployed model: every case gets a clear error, none costs GBs.

Table-driven over formats and runtimes: the header size check (JPEG, PNG, GIF, BMP,
WebP) that runs before decoding, 1-channel models fed GIF/BMP/WebP, input shape
checks in every runtime of the predictor, `export/predict.py`'s flag and model
errors (exit 2, one line), lazy batch-by-batch decoding, and the peak memory of a
388 KB PNG of 20000 x 20000 pixels in `serve_encoded` and `predict.py`.
"""

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_oltr.models as models
from keras_oltr import export
from keras_oltr.data import decode, transforms
from keras_oltr.export import predictor as predictor_module

H, W, C = 28, 28, 1
CLASS_NAMES = ["zero", "one", "two"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREDICT = os.path.join(REPO, "export", "predict.py")
ONE_GB = 1 << 30
KINDS = ("saved_model", "tflite", "onnx")
# (format, PIL save options)
FORMATS = [
    ("JPEG", {"quality": 95}),
    ("PNG", {}),
    ("GIF", {}),
    ("BMP", {}),
    ("WEBP", {"lossless": False}),
    ("WEBP", {"lossless": True}),
]


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def _encode(array, fmt, mode="RGB", **options):
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, fmt, **options)
    return buffer.getvalue()


def _rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _smooth_rgb(height, width):
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    rgb = np.stack([200 * x + 20, 180 * y + 30, 120 * (x + y) / 2 + 60], -1)
    return rgb.astype(np.uint8)


def _png_of_zeros(path, height, width):
    """A valid gray PNG of height x width zeros, written without holding its pixels."""

    def chunk(kind, payload):
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    rows = b"\0" * ((width + 1) * 100)  # filter byte + pixels, 100 rows at a time
    idat = b"".join(compressor.compress(rows) for _ in range(height // 100))
    idat += compressor.compress(b"\0" * ((width + 1) * (height % 100))) + compressor.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = models.build_plain_model(len(CLASS_NAMES), (H, W, C), backbone_options={"width": 8})
    root = tmp_path_factory.mktemp("models")
    return {
        "saved_model": export.export_saved_model(
            model, str(root / "serving"), CLASS_NAMES, warmup=False
        ),
        "tflite": export.convert_tflite(model, str(root / "m.tflite"), CLASS_NAMES),
        "onnx": export.convert_onnx(model, str(root / "m.onnx"), CLASS_NAMES),
    }


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    _png_of_zeros(path, 20000, 20000)
    return path


# ----------------------------------------------------------------- header sizes


@pytest.mark.parametrize("fmt, options", FORMATS)
@pytest.mark.parametrize("height, width", [(37, 61), (300, 7)])
def test_header_size_of_every_format(fmt, options, height, width):
    encoded = _encode(_rgb(height, width), fmt, **options)
    size = decode.encoded_image_size(tf.constant(encoded)).numpy()
    np.testing.assert_array_equal(size, [height, width])


def test_header_size_of_top_down_bmp_and_unknown_bytes():
    encoded = bytearray(_encode(_rgb(9, 13), "BMP"))
    encoded[22:26] = struct.pack("<i", -9)  # negative height: rows stored top-down
    size = decode.encoded_image_size(tf.constant(bytes(encoded))).numpy()
    np.testing.assert_array_equal(size, [9, 13])
    for junk in (b"", b"GI", b"not an image at all", _encode(_rgb(5, 5), "TIFF")):
        size = decode.encoded_image_size(tf.constant(junk)).numpy()
        np.testing.assert_array_equal(size, [-1, -1])


@pytest.mark.parametrize("fmt, options", FORMATS)
def test_pixel_budget_is_checked_before_decoding(fmt, options):
    encoded = tf.constant(_encode(_rgb(60, 50), fmt, **options))
    decoded = transforms.serving_transform(encoded, (H, W, C), max_pixels=3000)
    assert decoded.shape == (H, W, C)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)max_pixels=2999.*60\D+50"):
        transforms.serving_transform(encoded, (H, W, C), max_pixels=2999)


def test_unsupported_format_and_bad_budget():
    tiff = tf.constant(_encode(_rgb(5, 5), "TIFF"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unsupported image format"):
        transforms.serving_transform(tiff, (H, W, C))
    with pytest.raises(ValueError, match="Received: max_pixels=0"):
        decode.check_image_size(tiff, max_pixels=0)


# ------------------------------------------------------- 1-channel models, formats


@pytest.mark.parametrize("fmt, options", FORMATS)
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_every_format_decodes_for_a_gray_model(fmt, options, mode, tmp_path):
    rgb = _smooth_rgb(H, W)  # lossy codecs keep smooth colours (not noise) close
    path = tmp_path / f"image.{fmt.lower()}"
    path.write_bytes(_encode(rgb, fmt, mode, **options))
    loaded = export.load_image(str(path), (H, W, C))
    assert loaded.shape == (H, W, C)
    # What the file holds, as PIL converts it to gray (ITU-R 601-2 luma); lossy
    # formats and the converters' rounding differ by a few levels.
    expected = np.asarray(Image.open(path).convert("L"), np.float32)[..., None]
    tolerance = 3 if fmt in ("JPEG", "WEBP") and not options.get("lossless") else 1
    assert np.abs(loaded - expected).max() <= tolerance


# ------------------------------------------------------- runtimes check shapes

BAD_INPUTS = [
    ("no batch axis", np.zeros((H, W, C), np.float32), r"Received: images.shape=\(28, 28, 1\)"),
    ("RGB", np.zeros((2, H, W, 3), np.float32), r"Received: images.shape=\(2, 28, 28, 3\)"),
    ("other size", np.zeros((2, 32, 32, C), np.float32), r"images.shape=\(2, 32, 32, 1\)"),
    ("rank 5", np.zeros((1, 2, H, W, C), np.float32), r"images.shape=\(1, 2, 28, 28, 1\)"),
    ("uint8", np.zeros((2, H, W, C), np.uint8), "Received: dtype=uint8"),
    ("list", [[0.0]], "Received: dtype=list"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case, images, message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_every_runtime_checks_input_shapes(kind, case, images, message, artifacts):
    predictor = export.load_predictor(artifacts[kind])
    with pytest.raises(ValueError, match=message):
        predictor.predict(images)
    # The raw runtime behind predict() checks too (the TFLite signature runner would
    # otherwise resize itself to the wrong shape and return numbers).
    with pytest.raises(ValueError, match=message):
        predictor._run(images)
    good = predictor.predict(np.zeros((2, H, W, C), np.float32))
    assert good["probabilities"].shape == (2, len(CLASS_NAMES))


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_metadata_of_another_model_is_refused(kind, artifacts, tmp_path):
    path = tmp_path / os.path.basename(artifacts[kind])
    shutil.copy(artifacts[kind], path)
    metadata = json.loads(open(artifacts[kind] + ".json").read())
    metadata["image_shape"] = [32, 32, 1]
    (tmp_path / (path.name + ".json")).write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match=r"metadata says \[batch, 32, 32, 1\]"):
        export.load_predictor(str(path))


# ------------------------------------------------------------ lazy decoding


def test_files_are_decoded_batch_by_batch(artifacts, tmp_path, monkeypatch):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(_encode(_rgb(H, W, seed=i), "PNG", "L"))
    paths.insert(2, tmp_path / "missing.png")
    predictor = export.load_predictor(artifacts["onnx"])
    events = []
    load_image, predict = predictor_module.load_image, predictor.predict

    def logged_load(path, *args, **kwargs):
        events.append("load")
        return load_image(path, *args, **kwargs)

    def logged_predict(images):
        events.append(f"predict {len(images)}")
        return predict(images)

    monkeypatch.setattr(predictor_module, "load_image", logged_load)
    monkeypatch.setattr(predictor, "predict", logged_predict)
    results = export.predict_files(predictor, [str(p) for p in paths], batch_size=2)
    assert events == ["load", "load", "predict 2", "load", "load", "predict 1"] + [
        "load",
        "load",
        "predict 2",
    ]
    assert [r.path for r in results] == [str(p) for p in paths]
    assert [r.error is None for r in results] == [True, True, False, True, True, True]
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        export.predict_files(predictor, [str(paths[0])], batch_size=0)


# --------------------------------------------------------- the CLI, one line


def _predict_cli(*args):
    return subprocess.run(
        [sys.executable, PREDICT, *map(str, args)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        timeout=300,
    )


def _runtime_noise(line):
    # TensorFlow's C++ runtime logs a few lines at start-up whatever the log level.
    return line.startswith(("WARNING: All log messages before absl", "I0000", "W0000", "E0000"))


def _truncated(src, dst, keep=0.5):
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    shutil.copy(src + ".json", dst + ".json")
    return dst


CLI_CASES = [
    ("batch size 0", lambda a, t: ["--model", a["onnx"], "--batch_size=0"], "--batch_size"),
    ("batch size -3", lambda a, t: ["--model", a["onnx"], "--batch_size=-3"], "--batch_size"),
    ("max pixels 0", lambda a, t: ["--model", a["onnx"], "--max_pixels=0"], "--max_pixels"),
    (
        "truncated onnx",
        lambda a, t: ["--model", _truncated(a["onnx"], str(t / "cut.onnx"))],
        "cut.onnx",
    ),
    (
        "truncated tflite",
        lambda a, t: ["--model", _truncated(a["tflite"], str(t / "cut.tflite"))],
        "cut.tflite",
    ),
    ("missing model", lambda a, t: ["--model", str(t / "nothing.onnx")], "nothing.onnx"),
]


@pytest.mark.parametrize("case, args, named", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_predict_cli_errors_exit_2_with_one_line(case, args, named, artifacts, tmp_path):
    image = tmp_path / "image.png"
    image.write_bytes(_encode(_rgb(H, W), "PNG", "L"))
    result = _predict_cli(*args(artifacts, tmp_path), image)
    assert result.returncode == 2, (result.stdout, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line and not _runtime_noise(line)]
    assert len(lines) == 1 and lines[0].startswith("error:") and named in lines[0], lines
    assert result.stdout == ""


# ------------------------------------------------ a 388 KB PNG of 400 megapixels

_SERVE_BOMB = textwrap.dedent(
    """
    import sys
    import tensorflow as tf
    serve = tf.saved_model.load(sys.argv[1]).signatures["serve_encoded"]
    try:
        serve(encoded_images=tf.constant([open(sys.argv[2], "rb").read()]))
    except tf.errors.InvalidArgumentError as error:
        print("rejected:", " ".join(error.message.split())[:300])
    """
)

# Runs a script (argv[1]) with its arguments and reports the process's peak RSS.
_MEASURE = textwrap.dedent(
    """
    import resource, runpy, sys
    sys.argv = sys.argv[1:]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    finally:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        sys.stderr.write(f"\\npeak_rss_bytes={peak}\\n")
    """
)


def _run_measured(script, *args):
    """Runs a Python script in a child; returns (exit code, stdout, stderr, peak RSS bytes).

    The peak comes from the child's own resource.getrusage. The child is started by
    a shell that forks it: a process started straight from this (large) test process
    inherits the test process's peak RSS in ru_maxrss when it execs.
    """
    result = subprocess.run(
        ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-c", _MEASURE, script]
        + [str(a) for a in args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        timeout=300,
    )
    peaks = [line for line in result.stderr.splitlines() if line.startswith("peak_rss_bytes=")]
    assert len(peaks) == 1, result.stderr[-2000:]
    return result.returncode, result.stdout, result.stderr, int(peaks[0].split("=")[1])


def test_png_bomb_is_refused_by_serve_encoded_under_1_gb(bomb, artifacts, tmp_path):
    assert bomb.stat().st_size < 500_000
    script = tmp_path / "serve_bomb.py"
    script.write_text(_SERVE_BOMB)
    code, stdout, stderr, peak = _run_measured(script, artifacts["saved_model"], bomb)
    assert code == 0, stderr[-2000:]
    assert "rejected:" in stdout and "max_pixels=100000000" in stdout and "20000 20000" in stdout
    assert peak < ONE_GB, f"peak RSS {peak / 2**20:.0f} MiB"


def test_png_bomb_is_refused_by_predict_cli_under_1_gb(bomb, artifacts, tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_encode(_rgb(H, W), "PNG", "L"))
    code, stdout, stderr, peak = _run_measured(
        PREDICT, f"--model={artifacts['saved_model']}", bomb, good
    )
    assert code == 1, stderr[-2000:]
    lines = stdout.strip().splitlines()
    assert len(lines) == 2 and "ERROR" in lines[0] and "probability=" in lines[1]
    assert "Image too large" in lines[0] and "20000 20000" in lines[0]
    assert peak < ONE_GB, f"peak RSS {peak / 2**20:.0f} MiB"
