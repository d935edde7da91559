"""Training throughput of the stage-1 (plain) and stage-2 (OLTR) train steps.

Times compiled `train_on_batch` steps on random data for two ResNet-10 settings:

- "resnet10_224": 224x224x3, ImageNet stem, width 64, batch 64, 1000 classes
  (the ImageNet-LT model; stage 2 with ModulatedAttention and use_fc, 512-d);
- "resnet10_28": 28x28x1, small stem, width 16, batch 128, 10 classes
  (the narrow small-input model; stage 2 with attention and a 128-d use_fc).

Both stages train with Keras' stock fit step (CoupledSGD: momentum 0.9, coupled
weight decay); stage 2 adds the large-margin loss and the centroid step. Stage-2
inference (`predict_on_batch`) is timed too. Warm-up steps (tracing) are not timed;
the timed steps of the models are interleaved so that a change in the machine's load
hits all alike, and the median step time is reported.

The script runs on any Keras backend. The data are made once on the device
(keras.random), so on a GPU nothing is copied per step. For the GPU benchmark
(no TensorFlow needed):

    KERAS_BACKEND=jax python benchmarks/model_step.py --configs=resnet10_224 \
        --batch=256 --precisions=float32,mixed_bfloat16

On this project's CPU:

    python benchmarks/model_step.py --warmup=2 --steps=7

`--batch_norms=fused,keras` times the ResNets with keras_oltr's fused batch norm and
with Keras' own layer side by side; `--precisions=float32,mixed_bfloat16` likewise.

`--loop=fit` drives the train steps as the trainer does, `model.fit` over a
generator of the same device-resident batch (`--fit_steps` steps per timed call;
Keras then keeps the training state on the device between steps, which
`train_on_batch` writes back to the variables after every step).
`--deferred_jitter` also times both train steps with the ImageNet-family flip and
colour jitter inside the step (batches `{images, jitter}`, as the trainer feeds
them when the backend has an accelerator): "stage1+jit" / "stage2+jit", with their
cost over the plain step in the "s2/s1" column's place. `--deferred_resize` also
times stage-2 inference on `{canvas, geometry}` batches, the test resize finished
in the compiled call (`keras_oltr.deferred_resize`, as evaluation feeds the model
when the backend has an accelerator): "infer2+rsz", with its cost over "infer2".
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
from absl import app, flags
from keras import ops
from step_models import CONFIGS, build_models, train_job

from keras_oltr import colour_jitter, deferred_resize
from keras_oltr.inference.batches import with_deferred_resize

FLAGS = flags.FLAGS
flags.DEFINE_integer("warmup", 2, "Untimed steps per model (the first one traces).")
flags.DEFINE_integer("steps", 7, "Timed steps per model.")
flags.DEFINE_list("configs", ["resnet10_28", "resnet10_224"], "Which settings to run.")
flags.DEFINE_integer("batch", 0, "Batch size; 0 keeps each setting's own.")
flags.DEFINE_list(
    "precisions", ["float32"], "Keras dtype policies to time, e.g. float32,mixed_bfloat16."
)
flags.DEFINE_list(
    "batch_norms",
    ["fused"],
    "ResNet batch norms to time: fused (keras_oltr's FusedBatchNormalization), keras "
    "(keras.layers.BatchNormalization, the code before it).",
)
flags.DEFINE_enum(
    "loop",
    "train_on_batch",
    ["train_on_batch", "fit"],
    "train_on_batch: one call per step; fit: model.fit of --fit_steps steps per call.",
)
flags.DEFINE_integer("fit_steps", 10, "Train steps per timed model.fit call (--loop=fit).")
flags.DEFINE_bool(
    "deferred_jitter", False, "Also time the train steps with the flip + colour jitter in them."
)
flags.DEFINE_bool(
    "deferred_resize", False, "Also time stage-2 inference with the test resize in the call."
)
# The geometry of a 500 x 375 photo's 224 px test crop (what
# `transforms.imagenet_test_canvas` gives): scale, translation, window extent.
_PHOTO_GEOMETRY = [0.68266666, 0.682, -2.3466663, -2.0760002, 335.0, 335.0]


def _jitter_parameters(batch, seed=0):
    """A valid flip + jitter parameter vector per image (colour_jitter's layout)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(batch):
        factors = rng.uniform(0.6, 1.4, 3)
        row = [float(rng.random() < 0.5)]
        for op in rng.permutation(3):
            row += [factors[op], float(op == 2), float(op == 1)]
        rows.append(row)
    return ops.convert_to_tensor(np.array(rows, np.float32))


def _jobs(cfg, variant, loop, fit_steps, deferred_jitter, resize_in_call=False):
    """The timed jobs of one setting for one (precision, batch norm) variant.

    Each job is (callable, number of steps one call runs).
    """
    precision, batch_norm = variant
    keras.config.set_dtype_policy(precision)
    try:
        x = keras.random.uniform((cfg["batch"], *cfg["input_shape"]), 0.0, 255.0, seed=1)
        y = ops.cast(keras.random.randint((cfg["batch"],), 0, cfg["num_classes"], seed=2), "int32")
        plain, oltr = build_models(cfg, batch_norm=batch_norm)
    finally:
        keras.config.set_dtype_policy("float32")
    jobs = {
        (variant, "stage1"): train_job(plain, x, y, loop, fit_steps),
        (variant, "stage2"): train_job(oltr, x, y, loop, fit_steps),
        # predict_on_batch returns numpy arrays: the step has finished.
        (variant, "infer2"): ((lambda: oltr.predict_on_batch(x)), 1),
    }
    if deferred_jitter and cfg["input_shape"][-1] == 3:
        deferred = {
            colour_jitter.IMAGES_KEY: x,
            colour_jitter.JITTER_KEY: _jitter_parameters(cfg["batch"]),
        }
        jobs[(variant, "stage1+jit")] = train_job(plain, deferred, y, loop, fit_steps)
        jobs[(variant, "stage2+jit")] = train_job(oltr, deferred, y, loop, fit_steps)
    if resize_in_call and cfg["input_shape"][0] == 224:
        side = deferred_resize.canvas_size(224)
        shape = (cfg["batch"], side, side, cfg["input_shape"][-1])
        batch = {
            deferred_resize.CANVAS_KEY: ops.cast(
                keras.random.randint(shape, 0, 256, seed=3), "uint8"
            ),
            deferred_resize.GEOMETRY_KEY: ops.tile(
                ops.convert_to_tensor([_PHOTO_GEOMETRY], "float32"), (cfg["batch"], 1)
            ),
        }
        finishing = with_deferred_resize(oltr)
        jobs[(variant, "infer2+rsz")] = ((lambda: finishing.predict_on_batch(batch)), 1)
    return jobs


def _run(cfg, variants, warmup, steps, loop, fit_steps, deferred_jitter, resize_in_call):
    """Median step time of every (variant, job); the jobs of all variants interleave."""
    jobs = {}
    for variant in variants:
        jobs.update(_jobs(cfg, variant, loop, fit_steps, deferred_jitter, resize_in_call))
    for job, _ in jobs.values():
        for _ in range(warmup):
            job()
    times = {key: [] for key in jobs}
    for _ in range(steps):
        for key, (job, count) in jobs.items():
            start = time.perf_counter()
            job()  # returns numpy or Python values: the steps have finished
            times[key].append((time.perf_counter() - start) / count)
    return {key: statistics.median(t) for key, t in times.items()}


def main(argv):
    del argv
    unknown = set(FLAGS.configs) - set(CONFIGS)
    if unknown:
        raise ValueError(f"Unknown configs {sorted(unknown)}. Known: {sorted(CONFIGS)}")
    print(
        f"Keras {keras.__version__}, backend {keras.backend.backend()}; {os.cpu_count()} CPU "
        f"cores visible; warm-up {FLAGS.warmup}, timed {FLAGS.steps} calls per model (median, "
        f"all jobs interleaved); train steps by {FLAGS.loop}"
        + (f" ({FLAGS.fit_steps} steps per call)" if FLAGS.loop == "fit" else "")
    )
    variants = [(p, b) for p in FLAGS.precisions for b in FLAGS.batch_norms]
    base = variants[0]
    header = (
        f"{'config':<14} {'precision':<15} {'bn':<6} {'stage':<10} {'batch':>5} {'step s':>8} "
        f"{'images/s':>9} {'s2/s1':>6} {'vs ' + '/'.join(base):>20}"
    )
    print(header)
    print("-" * len(header))
    for name in FLAGS.configs:
        cfg = dict(CONFIGS[name])
        if FLAGS.batch:
            cfg["batch"] = FLAGS.batch
        medians = _run(
            cfg,
            variants,
            FLAGS.warmup,
            FLAGS.steps,
            FLAGS.loop,
            FLAGS.fit_steps,
            FLAGS.deferred_jitter,
            FLAGS.deferred_resize,
        )
        for (variant, stage), step in medians.items():
            ratio = ""
            if stage == "stage2":
                ratio = f"{step / medians[(variant, 'stage1')]:6.2f}"
            elif stage.endswith("+jit"):  # the jitter's cost: this step / the plain one
                ratio = f"{step / medians[(variant, stage[:-4])]:6.2f}"
            elif stage == "infer2+rsz":  # the resize's cost: this call / plain inference
                ratio = f"{step / medians[(variant, 'infer2')]:6.2f}"
            speedup = f"{medians[(base, stage)] / step:19.2f}x"
            print(
                f"{name:<14} {variant[0]:<15} {variant[1]:<6} {stage:<10} {cfg['batch']:>5} "
                f"{step:>8.3f} {cfg['batch'] / step:>9.1f} {ratio:>6} {speedup:>20}"
            )


if __name__ == "__main__":
    app.run(main)
