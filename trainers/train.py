"""Trains OLTR end to end: stage 1, stage 2, evaluation and export.

    python trainers/train.py                       # embedded mixed_mnist_lt benchmark
    python trainers/train.py --dataset=imagenet_lt --data_root=/data/imagenet
    python trainers/train.py --smoke               # seconds: tiny model, few steps

The preset (default: the one named like the dataset) fixes the experiment; flags
override single values. The resolved config is written to <workdir>/config.json.
A workdir with a checkpoint resumes where it stopped (--noresume starts over).
"""

import dataclasses
import os
import sys

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "mixed_mnist_lt", "Registered dataset name.")
flags.DEFINE_string(
    "preset",
    None,
    "Experiment preset (default: the dataset's name if a "
    "preset has it, else mixed_mnist_lt's settings).",
)
flags.DEFINE_string("data_root", None, "Image root folder (split-file datasets).")
flags.DEFINE_string("split_dir", None, "Folder of the split files (default: data_root).")
flags.DEFINE_multi_string(
    "dataset_arg",
    [],
    "Extra dataset builder argument key=value "
    "(e.g. train_file=..., imbalance_factor=50). Repeatable.",
)
flags.DEFINE_string(
    "workdir", None, "Output folder (default: runs/<preset>, or runs/<dataset> for own data)."
)
flags.DEFINE_bool("smoke", False, "Shrink the preset to a run of seconds.")
flags.DEFINE_enum("stage", "all", ["1", "2", "all"], "Which stage(s) to run.")
flags.DEFINE_integer("stage1_epochs", None, "Override stage-1 epochs.")
flags.DEFINE_integer("stage2_epochs", None, "Override stage-2 epochs.")
flags.DEFINE_float("stage1_lr", None, "Override the stage-1 learning rate.")
flags.DEFINE_float("stage2_lr", None, "Override the stage-2 learning rate.")
flags.DEFINE_integer("stage1_step_epochs", None, "Override the stage-1 step-decay period.")
flags.DEFINE_integer("stage2_step_epochs", None, "Override the stage-2 step-decay period.")
flags.DEFINE_integer("batch_size", None, "Override the global batch size.")
flags.DEFINE_float("tau", None, "Class-prior-aware CE in both stages (1 = Balanced Softmax).")
flags.DEFINE_integer(
    "checkpoint_every_steps", None, "Also checkpoint every N steps (0: only at epoch ends)."
)
flags.DEFINE_integer("max_steps_per_epoch", None, "Cap the steps of every epoch (0: no cap).")
flags.DEFINE_integer("seed", None, "Run seed (data order, augmentation, initialisation).")
flags.DEFINE_bool("mixed_precision", False, "mixed_float16 on GPU, mixed_bfloat16 on CPU.")
flags.DEFINE_enum(
    "strategy",
    "auto",
    ["auto", "one_device", "mirrored", "multi_worker"],
    "tf.distribute strategy.",
)
flags.DEFINE_enum(
    "colour_jitter_on",
    None,
    ["auto", "input_pipeline", "train_step"],
    "Where the ImageNet-family flip + colour jitter run: the tf.data pipeline (host CPU), "
    "the train step (accelerator), or auto: the train step when there is a GPU/TPU. "
    "Same images either way.",
)
flags.DEFINE_bool("resume", True, "Resume from the workdir's checkpoints when present.")
flags.DEFINE_bool("evaluate", True, "Evaluate both stages at the end of --stage=all.")
flags.DEFINE_float(
    "max_unreadable_fraction",
    0.01,
    "Evaluation fails when more than this share of a test split's images is unreadable.",
)
flags.DEFINE_bool("export", True, "Export the best OLTR model at the end of --stage=all.")
flags.DEFINE_bool(
    "deterministic", False, "Deterministic TF ops (bit-exact reruns and resumes on CPU; slower)."
)
flags.DEFINE_integer("verbose", 1, "Keras progress output: 0 none, 1 bar, 2 a line per epoch.")


def _reads_from_disk(name):
    """Whether dataset `name`'s builder takes a data_root (split-file datasets)."""
    import inspect

    from keras_oltr.data import dataset_builder, list_datasets

    if name not in list_datasets():
        return False  # get_dataset reports the unknown name with the known ones
    return "data_root" in inspect.signature(dataset_builder(name)).parameters


def resolve_config():
    """The ExperimentConfig from --preset and the override flags."""
    from keras_oltr.training import config as cfg

    preset = FLAGS.preset or (
        FLAGS.dataset if FLAGS.dataset in cfg.list_presets() else "mixed_mnist_lt"
    )
    config = cfg.get_preset(preset)
    kwargs = dict(config.dataset_kwargs)
    if FLAGS.data_root:
        kwargs["data_root"] = FLAGS.data_root
    if FLAGS.split_dir:
        kwargs["split_dir"] = FLAGS.split_dir
    from keras_oltr.data import list_datasets
    from keras_oltr.data.registry import dataset_parameters, parse_dataset_args

    if FLAGS.dataset in list_datasets():
        params = dataset_parameters(FLAGS.dataset)
        if FLAGS.data_root and not FLAGS.split_dir and "split_dir" in params:
            kwargs["split_dir"] = FLAGS.data_root  # as documented by --split_dir
        kwargs.update(parse_dataset_args(FLAGS.dataset, FLAGS.dataset_arg))
    if "data_root" not in kwargs and _reads_from_disk(FLAGS.dataset):
        raise ValueError(
            f"--dataset={FLAGS.dataset} reads images from disk: pass --data_root=<folder "
            "of the images> (and --split_dir when the split files are elsewhere). "
            "Received: data_root=None"
        )
    config = dataclasses.replace(config, dataset=FLAGS.dataset, dataset_kwargs=kwargs)
    if FLAGS.smoke:
        config = cfg.smoke(config)
    stage1, stage2 = config.stage1, config.stage2
    if FLAGS.stage1_epochs is not None:
        stage1 = dataclasses.replace(stage1, epochs=FLAGS.stage1_epochs)
    if FLAGS.stage2_epochs is not None:
        stage2 = dataclasses.replace(stage2, epochs=FLAGS.stage2_epochs)
    if FLAGS.stage1_lr is not None:
        stage1 = dataclasses.replace(stage1, learning_rate=FLAGS.stage1_lr)
    if FLAGS.stage2_lr is not None:
        stage2 = dataclasses.replace(stage2, learning_rate=FLAGS.stage2_lr)
    if FLAGS.stage1_step_epochs is not None:
        stage1 = dataclasses.replace(stage1, step_epochs=FLAGS.stage1_step_epochs)
    if FLAGS.stage2_step_epochs is not None:
        stage2 = dataclasses.replace(stage2, step_epochs=FLAGS.stage2_step_epochs)
    if FLAGS.tau is not None:
        stage1 = dataclasses.replace(stage1, tau=FLAGS.tau)
        stage2 = dataclasses.replace(stage2, tau=FLAGS.tau)
    overrides = {"stage1": stage1, "stage2": stage2, "mixed_precision": FLAGS.mixed_precision}
    for name in (
        "batch_size",
        "checkpoint_every_steps",
        "max_steps_per_epoch",
        "seed",
        "colour_jitter_on",
    ):
        if getattr(FLAGS, name) is not None:
            overrides[name] = getattr(FLAGS, name)
    config = dataclasses.replace(config, **overrides)  # validates every value
    from keras_oltr.training.trainer import default_run_name

    return dataclasses.replace(config, name=default_run_name(config))


# Config fields and the flags that set them, for error messages.
_FLAG_OF_FIELD = {
    "stage1.learning_rate": "--stage1_lr",
    "stage2.learning_rate": "--stage2_lr",
    "stage1.epochs": "--stage1_epochs",
    "stage2.epochs": "--stage2_epochs",
    "stage1.step_epochs": "--stage1_step_epochs",
    "stage2.step_epochs": "--stage2_step_epochs",
    "stage1.tau": "--tau",
    "stage2.tau": "--tau",
    "batch_size": "--batch_size",
    "checkpoint_every_steps": "--checkpoint_every_steps",
    "max_steps_per_epoch": "--max_steps_per_epoch",
    "seed": "--seed",
    "strategy": "--strategy",
    "colour_jitter_on": "--colour_jitter_on",
}


def _with_flag(message):
    for field, flag in _FLAG_OF_FIELD.items():
        if message.startswith(f"`{field}`"):
            return f"{flag}: {message}"
    return message


def _user_error(error):
    """User errors (flags, data, missing stage 1): one clear line, no traceback."""
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        # TensorFlow then runs only the tf.data input pipeline: keep it off the GPUs,
        # whose memory it would otherwise reserve beside the backend's.
        tf.config.set_visible_devices([], "GPU")
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    from keras_oltr.distribute import make_strategy
    from keras_oltr.training import TrainingError, run_experiment

    try:
        config = resolve_config()
        workdir = FLAGS.workdir or os.path.join("runs", config.name)
        strategy = make_strategy(FLAGS.strategy)
    except ValueError as error:
        _user_error(_with_flag(str(error)))
    try:
        logging.info(
            "Keras backend %s; strategy %s with %d replica(s); workdir %s",
            keras.backend.backend(),
            type(strategy).__name__,
            strategy.num_replicas_in_sync,
            os.path.abspath(workdir),
        )
        summary = run_experiment(
            config,
            workdir,
            stage=FLAGS.stage,
            strategy=strategy,
            resume=FLAGS.resume,
            evaluate=FLAGS.evaluate,
            export=FLAGS.export,
            verbose=FLAGS.verbose,
            max_unreadable_fraction=FLAGS.max_unreadable_fraction,
        )
    except TrainingError as error:
        _user_error(_with_flag(str(error)))
    if "results" in summary:
        print(
            f"\nResults ({config.dataset}, best checkpoints; open-set threshold "
            f"{config.threshold}):\n{summary['results']}"
        )
        print(f"Reports: {os.path.join(workdir, 'eval')}")
    elif FLAGS.stage == "1":
        from keras_oltr.training import Workdir

        print(
            f"\nStage 1 done: {Workdir(workdir).model_path(1)}. Evaluate it with\n"
            f"  python trainers/evaluate.py --workdir={workdir} --stage=1\n"
            "or continue with the same flags and --stage=2."
        )


if __name__ == "__main__":
    app.run(main)
