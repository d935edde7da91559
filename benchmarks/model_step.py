"""Training throughput of the stage-1 (plain) and stage-2 (OLTR) train steps.

Times compiled `train_on_batch` steps on random data for two ResNet-10 settings:

- "resnet10_224": 224x224x3, ImageNet stem, width 64, batch 64, 1000 classes
  (the ImageNet-LT model; stage 2 with ModulatedAttention and use_fc, 512-d);
- "resnet10_28": 28x28x1, small stem, width 16, batch 128, 10 classes
  (the narrow small-input model; stage 2 with attention and a 128-d use_fc).

Both stages use OLTRModel.compile (SGD momentum 0.9, coupled weight decay); stage 2
adds the large-margin loss and the centroid update. Warm-up steps (tracing) are not
timed; the timed steps of the two stages are interleaved so that a change in the
machine's load hits both alike, and the median step time is reported.

    python benchmarks/model_step.py --warmup=2 --steps=7
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from absl import app, flags

from keras_oltr.models import build_oltr_model, build_plain_model
from keras_oltr.optimizers import CoupledSGD, layer_lr_multipliers

FLAGS = flags.FLAGS
flags.DEFINE_integer("warmup", 2, "Untimed steps per model (the first one traces).")
flags.DEFINE_integer("steps", 7, "Timed steps per model.")
flags.DEFINE_list("configs", ["resnet10_28", "resnet10_224"], "Which settings to run.")

CONFIGS = {
    "resnet10_224": dict(
        input_shape=(224, 224, 3),
        batch=64,
        num_classes=1000,
        backbone_options={"width": 64, "stem": "imagenet"},
        feature_dim=512,
    ),
    "resnet10_28": dict(
        input_shape=(28, 28, 1),
        batch=128,
        num_classes=10,
        backbone_options={"width": 16, "stem": "small"},
        feature_dim=128,
    ),
}


def _models(cfg):
    plain = build_plain_model(
        cfg["num_classes"], cfg["input_shape"], backbone_options=cfg["backbone_options"]
    )
    plain.compile(CoupledSGD(0.1, momentum=0.9, coupled_weight_decay=5e-4))
    oltr = build_oltr_model(
        cfg["num_classes"],
        cfg["input_shape"],
        backbone_options=cfg["backbone_options"],
        use_attention=True,
        use_fc=True,
        feature_dim=cfg["feature_dim"],
        stage1_model=plain,  # feature_dim = 8 * width, so the hallucinator init fits
    )
    rng = np.random.default_rng(0)
    oltr.centroid_memory.set_centroids(
        rng.normal(size=(cfg["num_classes"], cfg["feature_dim"])).astype("float32")
    )
    oltr.compile(
        CoupledSGD(
            0.1,
            momentum=0.9,
            coupled_weight_decay=5e-4,
            lr_multipliers=layer_lr_multipliers(oltr, {"backbone": 0.1, "centroids": 0.1}),
        )
    )
    return plain, oltr


def _run(name, cfg, warmup, steps):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (cfg["batch"], *cfg["input_shape"])).astype("float32")
    y = rng.integers(0, cfg["num_classes"], cfg["batch"]).astype("int32")
    plain, oltr = _models(cfg)
    models = {"stage1": plain, "stage2": oltr}
    for model in models.values():
        for _ in range(warmup):
            model.train_on_batch(x, y)
    times = {stage: [] for stage in models}
    for _ in range(steps):
        for stage, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(x, y)  # returns numpy metrics: the step has finished
            times[stage].append(time.perf_counter() - start)
    medians = {stage: statistics.median(t) for stage, t in times.items()}
    return [
        (name, stage, cfg["batch"], medians[stage], cfg["batch"] / medians[stage])
        for stage in models
    ], medians["stage2"] / medians["stage1"]


def main(argv):
    del argv
    unknown = set(FLAGS.configs) - set(CONFIGS)
    if unknown:
        raise ValueError(f"Unknown configs {sorted(unknown)}. Known: {sorted(CONFIGS)}")
    print(
        f"CPU: {os.cpu_count()} cores visible; warm-up {FLAGS.warmup}, "
        f"timed {FLAGS.steps} steps per model (median)"
    )
    header = f"{'config':<14} {'stage':<7} {'batch':>5} {'step s':>8} {'images/s':>9} {'s2/s1':>6}"
    print(header)
    print("-" * len(header))
    for name in FLAGS.configs:
        rows, ratio = _run(name, CONFIGS[name], FLAGS.warmup, FLAGS.steps)
        for config, stage, batch, step, ips in rows:
            shown = f"{ratio:6.2f}" if stage == "stage2" else ""
            print(f"{config:<14} {stage:<7} {batch:>5} {step:>8.3f} {ips:>9.1f} {shown:>6}")


if __name__ == "__main__":
    app.run(main)
