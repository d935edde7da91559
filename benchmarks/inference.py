"""Inference speed and size of every export format, for two OLTR models.

    python benchmarks/inference.py [--models=resnet10_224,mnist_28] [--runs=50]

Builds (untrained weights: speed does not depend on them) the ImageNet-LT ResNet-10
OLTR model at 224x224x3 (width 64, ImageNet stem, 1000 classes) and the embedded
benchmark's model at 28x28x1 (width 8, small stem, 24 classes); exports each as a
SavedModel, TFLite float32 / float16 / dynamic-range int8 / full int8 and ONNX; and
prints batch-1 latency (median, p95) and batch-32 throughput for Keras and every
format, with the artifact sizes, as a Markdown table. CPU only; the numbers depend
on what else runs on the machine.
"""

import os
import tempfile
import time

import numpy as np
from absl import app, flags, logging

_MODELS = flags.DEFINE_list("models", ["resnet10_224", "mnist_28"], "Which models.")
_RUNS = flags.DEFINE_integer("runs", 50, "Timed batch-1 calls per runtime.")
_BATCH_RUNS = flags.DEFINE_integer("batch_runs", 5, "Timed batch-32 calls per runtime.")
_THREADS = flags.DEFINE_integer("threads", 2, "Threads for TFLite and ONNX Runtime.")
_OUT = flags.DEFINE_string("out", None, "Also write the table to this Markdown file.")

MODELS = {
    "resnet10_224": dict(
        num_classes=1000,
        input_shape=(224, 224, 3),
        backbone_options={"width": 64, "stem": "imagenet"},
    ),
    "mnist_28": dict(
        num_classes=24, input_shape=(28, 28, 1), backbone_options={"width": 8, "stem": "small"}
    ),
}
BATCH = 32


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def _time(fn, images, runs):
    fn(images)  # warm-up (tracing, allocation)
    fn(images)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(images)
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def _bench(name, fn, size, rng, shape):
    one = rng.uniform(0, 255, (1, *shape)).astype(np.float32)
    many = rng.uniform(0, 255, (BATCH, *shape)).astype(np.float32)
    latency = _time(fn, one, _RUNS.value) * 1000.0
    batch = _time(fn, many, _BATCH_RUNS.value)
    row = {
        "runtime": name,
        "b1_median_ms": float(np.median(latency)),
        "b1_p95_ms": float(np.percentile(latency, 95)),
        "b32_img_per_s": float(BATCH / np.median(batch)),
        "size_mb": size / 2**20 if size else None,
    }
    logging.info("%s", row)
    return row


def benchmark(model_name, workdir):
    """Rows of the table for one model."""
    import keras

    import keras_oltr.models as models
    from keras_oltr import export

    spec = MODELS[model_name]
    keras.utils.set_random_seed(0)
    model = models.build_oltr_model(**spec)
    shape = spec["input_shape"]
    names = [f"class_{i}" for i in range(spec["num_classes"])]
    rng = np.random.default_rng(0)
    keras_path = os.path.join(workdir, "model.keras")
    model.save(keras_path)
    rows = [
        _bench("keras (predict_on_batch)", model.predict_on_batch, _size(keras_path), rng, shape)
    ]
    saved = export.export_saved_model(model, workdir, names, warmup=False)
    rows.append(
        _bench("SavedModel", export.load_predictor(saved).predict, _size(saved), rng, shape)
    )
    calibration = rng.uniform(0, 255, (32, *shape)).astype(np.float32)
    for quantization in export.QUANTIZATIONS:
        path = export.convert_tflite(
            model,
            os.path.join(workdir, f"{quantization}.tflite"),
            names,
            quantization=quantization,
            representative_images=calibration,
        )
        predictor = export.load_predictor(path, num_threads=_THREADS.value)
        rows.append(_bench(f"TFLite {quantization}", predictor.predict, _size(path), rng, shape))
    path = export.convert_onnx(model, os.path.join(workdir, "model.onnx"), names)
    predictor = export.load_predictor(path, num_threads=_THREADS.value)
    rows.append(_bench("ONNX Runtime", predictor.predict, _size(path), rng, shape))
    return rows


def format_table(results):
    lines = [
        "| model | runtime | batch-1 median (ms) | batch-1 p95 (ms) | batch-32 (img/s) "
        "| size (MB) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for model_name, rows in results.items():
        for row in rows:
            size = "" if row["size_mb"] is None else f"{row['size_mb']:.2f}"
            lines.append(
                f"| {model_name} | {row['runtime']} | {row['b1_median_ms']:.2f} | "
                f"{row['b1_p95_ms']:.2f} | {row['b32_img_per_s']:.1f} | {size} |"
            )
    return "\n".join(lines)


def main(argv):
    del argv
    unknown = set(_MODELS.value) - set(MODELS)
    if unknown:
        raise app.UsageError(f"Unknown models {sorted(unknown)}; known: {sorted(MODELS)}")
    results = {}
    for model_name in _MODELS.value:
        with tempfile.TemporaryDirectory() as workdir:
            results[model_name] = benchmark(model_name, workdir)
    table = format_table(results)
    print(f"CPU cores visible: {os.cpu_count()}; threads for TFLite/ORT: {_THREADS.value}\n")
    print(table)
    if _OUT.value:
        with open(_OUT.value, "w", encoding="utf-8") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    app.run(main)
