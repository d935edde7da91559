"""keras_oltr vs the reference PyTorch OLTR code, side by side on one machine.

Times the stage-1 train step, the stage-2 train step and stage-2 inference of
ResNet-10 at 224 px, 1000 classes (ImageNet-LT settings) for both implementations,
and the deployed stage-2 model (the SavedModel, and the ONNX model under ONNX
Runtime, both with the open-set decision) against the reference's eager inference
at `--infer_batch` (32).
Each measurement is its own process limited to the same number of threads; the two
implementations alternate (A B, B A, ...) over several rounds so that a change in the
machine's load hits both alike, and the ratios are taken within each round.

The reference side imports the reference's own modules from a checkout of
github.com/zhmiao/OpenLongTailRecognition-OLTR (`--reference_src`); its `.cuda()`
calls are made no-ops in this harness, nothing of its code is copied. Without a
checkout, or without PyTorch, the benchmark says so and exits.

    python benchmarks/vs_reference.py --reference_src=/path/to/OLTR --rounds=3

`--device=gpu` compares the two on one CUDA GPU: the reference runs on it as
PyTorch, keras_oltr under the Keras backend that `KERAS_BACKEND` names (JAX on a
machine without TensorFlow). Both synchronise the device at the end of each step
(PyTorch explicitly; Keras returns numpy values). Only the train steps and stage-2
inference are compared there (exporting needs TensorFlow):

    KERAS_BACKEND=jax python benchmarks/vs_reference.py --reference_src=/path/to/OLTR \
        --device=gpu --batch=256 --rounds=2

`--loop=fit` times the train steps as each trainer runs them: keras_oltr's
`model.fit` over `--fit_steps` steps (the state stays on the device between steps),
the reference's loop over as many steps with one synchronisation at the end (its
training loop reads no value back between steps either).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("reference_src", None, "Checkout of the official OLTR code.")
flags.DEFINE_integer("rounds", 3, "Interleaved rounds (each runs both implementations).")
flags.DEFINE_integer("warmup", 2, "Untimed steps per job.")
flags.DEFINE_integer("steps", 5, "Timed steps per job (median reported).")
flags.DEFINE_integer("batch", 64, "Batch size.")
flags.DEFINE_integer("infer_batch", 32, "Batch of the deployed-model comparison.")
flags.DEFINE_integer("threads", 2, "CPU threads for each implementation.")
flags.DEFINE_enum("device", "cpu", ["cpu", "gpu"], "Where both implementations run.")
flags.DEFINE_enum(
    "precision",
    "float32",
    ["float32", "bfloat16"],
    "bfloat16: the reference under torch.autocast(bfloat16), keras_oltr under the "
    "mixed_bfloat16 dtype policy (float32 weights in both).",
)
flags.DEFINE_enum(
    "loop",
    "train_on_batch",
    ["train_on_batch", "fit"],
    "train_on_batch: one synchronised step per timed call (keras_oltr's train_on_batch); "
    "fit: --fit_steps steps per timed call (keras_oltr's model.fit), then one sync.",
)
flags.DEFINE_integer("fit_steps", 10, "Train steps per timed call with --loop=fit.")
flags.DEFINE_string("export_dir", None, "Internal: where the keras_oltr side exports.")
flags.DEFINE_enum("worker", None, ["reference", "keras_oltr"], "Internal: run one side.")

# comparison -> (reference job, keras_oltr job)
PAIRS = {
    "stage1": ("stage1", "stage1"),
    "stage2": ("stage2", "stage2"),
    "infer2": ("infer2", "infer2"),
    "savedmodel_b32": ("infer2_b32", "savedmodel_b32"),
    "onnx_b32": ("infer2_b32", "onnx_b32"),
}
NUM_CLASSES, FEATURE_DIM = 1000, 512


def _time(jobs, warmup, steps):
    """Median seconds per step of each job: a callable, or (callable, steps per call)."""
    jobs = {name: job if isinstance(job, tuple) else (job, 1) for name, job in jobs.items()}
    for job, _ in jobs.values():
        for _ in range(warmup):
            job()
    times = {name: [] for name in jobs}
    for _ in range(steps):
        for name, (job, count) in jobs.items():
            start = time.perf_counter()
            job()
            times[name].append((time.perf_counter() - start) / count)
    return {name: statistics.median(t) for name, t in times.items()}


def _steps(step, sync):
    """A timed job of train steps: one then a sync, or --fit_steps then one sync."""
    count = FLAGS.fit_steps if FLAGS.loop == "fit" else 1

    def run():
        for _ in range(count):
            step()
        sync()

    return run, count


def _reference_jobs(src, batch):
    import torch
    from torch import nn

    torch.set_num_threads(FLAGS.threads)
    gpu = FLAGS.device == "gpu"
    if not gpu:
        # The reference calls .cuda() on tensors and modules; on CPU they stay put.
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        nn.Module.cuda = lambda self, *args, **kwargs: self
    device = torch.device("cuda" if gpu else "cpu")
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    sys.path.insert(0, src)
    from loss.DiscCentroidsLoss import DiscCentroidsLoss
    from models import DotProductClassifier, MetaEmbeddingClassifier, ResNet10Feature

    x = torch.rand(batch, 3, 224, 224, device=device)
    x_small = torch.rand(FLAGS.infer_batch, 3, 224, 224, device=device)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    ce = nn.CrossEntropyLoss()

    def sgd(groups):
        return torch.optim.SGD(groups, momentum=0.9, weight_decay=5e-4)

    # Stage 1 (config/ImageNet_LT/stage_1.py): plain ResNet-10 + dot-product classifier.
    feat1 = ResNet10Feature.create_model(False, False, None, False, None, False).to(device)
    clf1 = DotProductClassifier.create_model(FEATURE_DIM, NUM_CLASSES, False, None, False)
    clf1 = clf1.to(device)
    opt1 = sgd([{"params": feat1.parameters(), "lr": 0.1}, {"params": clf1.parameters()}])
    opt1.param_groups[1]["lr"] = 0.1

    def autocast():
        return torch.autocast(device.type, torch.bfloat16, enabled=FLAGS.precision == "bfloat16")

    def stage1():
        opt1.zero_grad()
        with autocast():
            logits, _ = clf1(feat1(x)[0])
            loss = ce(logits, y)
        loss.backward()
        opt1.step()

    # Stage 2 (stage_2_meta_embedding.py): attention + use_fc, meta-embedding classifier,
    # DiscCentroidsLoss (weight 0.01) with its own SGD, as run_networks.py trains them.
    feat2 = ResNet10Feature.create_model(True, True, None, False, None, False).to(device)
    clf2 = MetaEmbeddingClassifier.create_model(FEATURE_DIM, NUM_CLASSES, False, None, False)
    clf2 = clf2.to(device)
    centroid_loss = DiscCentroidsLoss(NUM_CLASSES, FEATURE_DIM).to(device)
    opt2 = sgd([{"params": feat2.parameters(), "lr": 0.01}, {"params": clf2.parameters()}])
    opt2.param_groups[1]["lr"] = 0.1
    opt_c = torch.optim.SGD(centroid_loss.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def stage2():
        opt2.zero_grad()
        opt_c.zero_grad()
        with autocast():
            features, _ = feat2(x)
            logits, _ = clf2(features, centroid_loss.centroids.data)
        # The reference's centroid loss mixes dtypes in an in-place addmm_ under
        # autocast: it (and the cross-entropy) take float32 values.
        loss = ce(logits.float(), y) + 0.01 * centroid_loss(features.float(), y)
        loss.backward()
        opt2.step()
        opt_c.step()

    def infer(images):
        feat2.eval()
        clf2.eval()
        with torch.no_grad(), autocast():
            clf2(feat2(images)[0], centroid_loss.centroids.data)
        sync()
        feat2.train()
        clf2.train()

    return {
        "stage1": _steps(stage1, sync),
        "stage2": _steps(stage2, sync),
        "infer2": lambda: infer(x),
        "infer2_b32": lambda: infer(x_small),
    }


def _keras_jobs(batch):
    import keras

    tensorflow = keras.backend.backend() == "tensorflow"
    if tensorflow:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from step_models import CONFIGS, build_models, train_job  # as in model_step.py

    cfg = dict(CONFIGS["resnet10_224"], batch=batch)
    x = keras.random.uniform((batch, 224, 224, 3), 0.0, 255.0, seed=1)
    y = keras.ops.cast(keras.random.randint((batch,), 0, NUM_CLASSES, seed=2), "int32")
    keras.config.set_dtype_policy("mixed_bfloat16" if FLAGS.precision == "bfloat16" else "float32")
    plain, oltr = build_models(cfg)
    keras.config.set_dtype_policy("float32")

    def train(model):
        return train_job(model, x, y, FLAGS.loop, FLAGS.fit_steps)

    jobs = {
        "stage1": train(plain),
        "stage2": train(oltr),
        # predict_on_batch returns numpy values: the step has finished.
        "infer2": lambda: oltr.predict_on_batch(x),
    }
    if tensorflow and FLAGS.device == "cpu":
        saved, onnx = _exported(oltr)
        pixels = keras.random.uniform((FLAGS.infer_batch, 224, 224, 3), 0.0, 255.0, seed=3)
        pixels = keras.ops.convert_to_numpy(pixels)
        jobs["savedmodel_b32"] = lambda: saved.predict(pixels)
        jobs["onnx_b32"] = lambda: onnx.predict(pixels)
    return jobs


def _exported(model):
    """Predictors of the stage-2 model as a SavedModel and as ONNX (exported once per run).

    Both take raw pixels and return the logits, reachability and open-set decision;
    the weights are untrained (speed does not depend on them).
    """
    from keras_oltr import export

    names = [f"class_{i}" for i in range(NUM_CLASSES)]
    saved = os.path.join(FLAGS.export_dir, "oltr", "1")  # <out_dir>/<model_name>/<version>
    if not os.path.isdir(saved):
        saved = export.export_saved_model(model, FLAGS.export_dir, names, warmup=False)
    onnx = os.path.join(FLAGS.export_dir, "model.onnx")
    if not os.path.isfile(onnx):
        export.convert_onnx(model, onnx, names)
    return (
        export.load_predictor(saved),
        export.load_predictor(onnx, num_threads=FLAGS.threads),
    )


def _run_worker():
    if FLAGS.worker == "reference":
        jobs = _reference_jobs(FLAGS.reference_src, FLAGS.batch)
    else:
        jobs = _keras_jobs(FLAGS.batch)
    print("RESULT " + json.dumps(_time(jobs, FLAGS.warmup, FLAGS.steps)), flush=True)


def _spawn(worker):
    env = dict(os.environ, OMP_NUM_THREADS=str(FLAGS.threads), TF_CPP_MIN_LOG_LEVEL="2")
    args = [sys.executable, os.path.abspath(__file__), f"--worker={worker}"]
    names = ("warmup", "steps", "batch", "infer_batch", "threads", "export_dir", "device")
    names += ("precision", "loop", "fit_steps")
    args += [f"--{name}={getattr(FLAGS, name)}" for name in names]
    if FLAGS.reference_src:
        args.append(f"--reference_src={FLAGS.reference_src}")
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{worker} run failed:\n{result.stderr[-3000:]}")


def main(argv):
    del argv
    if FLAGS.worker:
        _run_worker()
        return
    if not FLAGS.reference_src or not os.path.isfile(
        os.path.join(FLAGS.reference_src, "models", "ResNet10Feature.py")
    ):
        print(
            "vs_reference: skipped, no reference checkout (pass --reference_src=<a checkout "
            "of github.com/zhmiao/OpenLongTailRecognition-OLTR>)."
        )
        return
    try:
        import torch
    except ImportError:
        print("vs_reference: skipped, PyTorch is not installed (pip install torch).")
        return
    if FLAGS.device == "gpu" and not torch.cuda.is_available():
        raise app.UsageError("--device=gpu: PyTorch sees no CUDA GPU on this machine.")
    where = (
        f"GPU ({torch.cuda.get_device_name()})"
        if FLAGS.device == "gpu"
        else f"CPU, {FLAGS.threads} threads each"
    )
    print(
        f"ResNet-10, 224 px, {NUM_CLASSES} classes, batch {FLAGS.batch} "
        f"(deployed models: {FLAGS.infer_batch}), {FLAGS.precision}, {where}; "
        f"median of {FLAGS.steps} timed calls after {FLAGS.warmup}; train steps by "
        + (f"fit ({FLAGS.fit_steps} steps a call)" if FLAGS.loop == "fit" else "train_on_batch")
    )
    with tempfile.TemporaryDirectory() as export_dir:
        FLAGS.export_dir = export_dir
        ratios = _rounds()
    print("speed-up = reference step time / keras_oltr step time (> 1: keras_oltr faster)")
    print("*_b32: the reference's eager inference vs keras_oltr's exported model")
    for name, values in ratios.items():
        if not values:
            continue
        listed = ", ".join(f"{r:.2f}" for r in values)
        print(f"{name}: median {statistics.median(values):.2f}x ({listed})")


def _rounds():
    header = (
        f"{'round':<6} {'comparison':<15} {'reference s':>11} {'keras_oltr s':>12} {'speed-up':>9}"
    )
    print(header)
    print("-" * len(header))
    ratios = {name: [] for name in PAIRS}
    for index in range(FLAGS.rounds):
        order = ("reference", "keras_oltr") if index % 2 == 0 else ("keras_oltr", "reference")
        results = {worker: _spawn(worker) for worker in order}
        for name, (ref_job, our_job) in PAIRS.items():
            if our_job not in results["keras_oltr"]:
                continue  # the exported models: TensorFlow on CPU only
            ref, ours = results["reference"][ref_job], results["keras_oltr"][our_job]
            ratios[name].append(ref / ours)
            print(f"{index:<6} {name:<15} {ref:>11.3f} {ours:>12.3f} {ref / ours:>8.2f}x")
    return ratios


if __name__ == "__main__":
    app.run(main)
