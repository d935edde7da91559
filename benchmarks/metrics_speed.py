r"""Times every OLTR metric on 1,000,000 predictions over 1,000 classes.

Usage::

    python benchmarks/metrics_speed.py [--num_samples=1000000] [--num_classes=1000]

Inputs are top-1 arrays (predicted class, max probability), reachability, and a
validation split for threshold selection, as `evaluate_model` passes them; the
target is under 5 s for `evaluate_top1_predictions` on one CPU core.
"""

import time

import numpy as np
from absl import app, flags
from synthetic import fake_top1

from keras_oltr.evaluation import metrics

_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1_000_000, "Test predictions.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Known classes.")
_OPEN_FRACTION = flags.DEFINE_float("open_fraction", 0.2, "Share of open (-1) test images.")
_NUM_VAL = flags.DEFINE_integer("num_val", 200_000, "Validation predictions.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats (the median is reported).")


def _median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    n, k = _NUM_SAMPLES.value, _NUM_CLASSES.value
    # ImageNet-LT-like counts: 1280 down to 5.
    counts = np.maximum(5, (1280 * np.exp(-np.arange(k) * 5.5 / k)).astype(np.int64))
    pred, prob, labels = fake_top1(rng, n, k, _OPEN_FRACTION.value)
    reach = rng.gamma(2.0, 1.0, n)
    val_pred, val_prob, val_labels = fake_top1(rng, _NUM_VAL.value, k, 0.2)
    val = {"predicted_class": val_pred, "max_probability": val_prob, "labels": val_labels}

    parts = {
        "closed_set_metrics": lambda: metrics.closed_set_metrics(pred, labels, counts),
        "open_set_metrics": lambda: metrics.open_set_metrics(pred, prob, labels, counts),
        "threshold_free (msp)": lambda: metrics.threshold_free_metrics(labels, prob),
        "threshold_curves (101 t)": lambda: metrics.threshold_curves(pred, prob, labels, counts),
        "expected_calibration_error": lambda: metrics.expected_calibration_error(
            prob[labels >= 0], pred[labels >= 0] == labels[labels >= 0]
        ),
        "select_threshold (val)": lambda: metrics.select_threshold(
            val_pred, val_prob, val_labels, k
        ),
    }
    repeats = _REPEATS.value
    print(f"{n:,} predictions, {k} classes, {_NUM_VAL.value:,} val; median of {repeats}")
    for name, fn in parts.items():
        print(f"  {name:<28s} {_median_seconds(fn, repeats):7.3f} s")
    total = _median_seconds(
        lambda: metrics.evaluate_top1_predictions(
            pred, prob, labels, counts, reachability=reach, val=val
        ),
        repeats,
    )
    print(f"evaluate_top1_predictions (everything): {total:.3f} s (target < 5 s)")


if __name__ == "__main__":
    app.run(main)
