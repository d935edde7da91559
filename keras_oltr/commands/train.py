"""Trains OLTR end to end: stage 1, stage 2, evaluation and export.

    python trainers/train.py                       # embedded mixed_mnist_lt benchmark
    python trainers/train.py --dataset=imagenet_lt --data_root=/data/imagenet
    python trainers/train.py --smoke               # seconds: tiny model, few steps
    python trainers/train.py --method=crt          # another stage 2: crt, lws, tau_norm,
                                                   # logit_adjust, balanced_softmax

    python trainers/train.py --config.stage2.epochs=60 --config.model.feature_dim=256

The preset (default: the one named like the dataset) fixes the experiment; every
field of the config is settable by its dotted name (`--config.<field>`; --helpfull
lists them), and the short flags below are aliases of the common ones. The resolved
config is written to <workdir>/config.json. A workdir with a checkpoint resumes
where it stopped (--noresume starts over). Flags -> config -> `run_experiment`.
"""

import dataclasses
import inspect
import os

from absl import flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf

from keras_oltr.cli import exit_with_error, run
from keras_oltr.config import leaf_fields, with_overrides
from keras_oltr.data import dataset_builder, list_datasets
from keras_oltr.data.registry import dataset_parameters, parse_dataset_args
from keras_oltr.distribute import describe_parallelism, make_strategy
from keras_oltr.experiment import default_run_name, run_experiment
from keras_oltr.methods import configure_method, list_methods
from keras_oltr.presets import get_preset, list_presets, smoke
from keras_oltr.runs import Workdir
from keras_oltr.training import TrainingError

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "dataset", "mixed_mnist_lt", f"Registered dataset name, one of {', '.join(list_datasets())}."
)
flags.DEFINE_string(
    "preset",
    None,
    f"Experiment preset, one of {', '.join(list_presets())} (default: the dataset's name "
    "if a preset has it, else mixed_mnist_lt's settings).",
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
flags.DEFINE_enum(
    "strategy",
    "auto",
    ["auto", "one_device", "mirrored", "multi_worker"],
    "Parallelism. auto: on TensorFlow MultiWorkerMirroredStrategy when TF_CONFIG names "
    "several tasks, MirroredStrategy with several GPUs; on JAX keras.distribution."
    "DataParallel over the local devices; on PyTorch one device. mirrored and "
    "multi_worker are TensorFlow's.",
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
flags.DEFINE_bool("print_config", False, "Print the resolved config as JSON and exit.")
flags.DEFINE_integer("verbose", 1, "Keras progress output: 0 none, 1 bar, 2 a line per epoch.")


# Short flags, aliases of config fields: {flag: (fields it sets, help)}.
ALIASES = {
    "stage1_epochs": (("stage1.epochs",), "Stage-1 epochs."),
    "stage2_epochs": (("stage2.epochs",), "Stage-2 epochs."),
    "stage1_lr": (("stage1.learning_rate",), "The stage-1 learning rate."),
    "stage2_lr": (("stage2.learning_rate",), "The stage-2 learning rate."),
    "stage1_step_epochs": (("stage1.step_epochs",), "The stage-1 step-decay period."),
    "stage2_step_epochs": (("stage2.step_epochs",), "The stage-2 step-decay period."),
    "batch_size": (("batch_size",), "The global batch size."),
    "tau": (("stage1.tau", "stage2.tau"), "Class-prior-aware CE in both stages (1 = BalSoftmax)."),
    "checkpoint_every_steps": (
        ("checkpoint_every_steps",),
        "Also checkpoint every N steps (0: only at epoch ends).",
    ),
    "max_steps_per_epoch": (("max_steps_per_epoch",), "Cap the steps of every epoch (0: none)."),
    "seed": (("seed",), "Run seed (data order, augmentation, initialisation)."),
    "mixed_precision": (("mixed_precision",), "mixed_float16 on GPU, mixed_bfloat16 on CPU."),
    "colour_jitter_on": (
        ("colour_jitter_on",),
        "Where the ImageNet-family flip + colour jitter run: input_pipeline (host CPU), "
        "train_step (accelerator), or auto (train_step when there is a GPU/TPU).",
    ),
    "method": (
        ("method",),
        f"The stage-2 long-tail method, one of {', '.join(list_methods())}; it brings its "
        "own stage-2 schedule (the --stage2_* flags change it).",
    ),
}
CONFIG_PREFIX = "config."
# Set on the command line through the flags above, not as config fields.
_NOT_FLAGS = ("name", "dataset")
_DEFINE = {int: flags.DEFINE_integer, float: flags.DEFINE_float, bool: flags.DEFINE_bool}


def _define(name, kind, help_text):
    define = _DEFINE.get(kind, flags.DEFINE_string)
    define(name, None, help_text)


LEAF_FIELDS = leaf_fields()
for _field, _kind in LEAF_FIELDS.items():
    if _field not in _NOT_FLAGS:
        _define(CONFIG_PREFIX + _field, _kind, f"Override config field {_field}.")
for _alias, (_fields, _help) in ALIASES.items():
    _define(_alias, LEAF_FIELDS[_fields[0]], f"{_help} (= --{CONFIG_PREFIX}{_fields[0]})")


def _value(field, value):
    """A flag's value as the field wants it ("none" -> None for optional strings)."""
    if isinstance(value, str) and value.lower() == "none" and LEAF_FIELDS[field] is not str:
        return None
    return value


def config_overrides():
    """{dotted field: value} set on the command line, aliases first, then --config.*."""
    overrides = {}
    for alias, (fields_, _) in ALIASES.items():
        if FLAGS[alias].value is not None:
            overrides.update({f: FLAGS[alias].value for f in fields_})
    for field in LEAF_FIELDS:
        name = CONFIG_PREFIX + field
        if field not in _NOT_FLAGS and FLAGS[name].value is not None:
            overrides[field] = _value(field, FLAGS[name].value)
    return overrides


def _reads_from_disk(name):
    """Whether dataset `name`'s builder takes a data_root (split-file datasets)."""
    if name not in list_datasets():
        return False  # get_dataset reports the unknown name with the known ones
    return "data_root" in inspect.signature(dataset_builder(name)).parameters


def resolve_config():
    """The ExperimentConfig from --preset, the dataset flags and the overrides."""
    preset = FLAGS.preset or (
        FLAGS.dataset if FLAGS.dataset in list_presets() else "mixed_mnist_lt"
    )
    config = get_preset(preset)
    kwargs = dict(config.dataset_kwargs)
    if FLAGS.data_root:
        kwargs["data_root"] = FLAGS.data_root
    if FLAGS.split_dir:
        kwargs["split_dir"] = FLAGS.split_dir
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
    overrides = config_overrides()
    # The method's own stage-2 schedule first, so that the overrides change it.
    config = configure_method(config, overrides.get("method", config.method))
    if FLAGS.smoke:
        config = smoke(config)
    config = with_overrides(config, overrides)  # validates every value
    return dataclasses.replace(config, name=default_run_name(config))


def _with_flag(message):
    """Prefixes a config error with the flag that set the field (as the user typed it)."""
    if message.startswith("`strategy`"):
        return f"--strategy: {message}"
    for field in sorted(LEAF_FIELDS, key=len, reverse=True):
        if message.startswith(f"`{field}`"):
            given = [a for a, (fs, _) in ALIASES.items() if field in fs and FLAGS[a].present]
            return f"--{given[0] if given else CONFIG_PREFIX + field}: {message}"
    return message


def main(argv):
    if len(argv) > 1:
        exit_with_error(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    if keras.backend.backend() != "tensorflow":
        # TensorFlow then runs only the tf.data input pipeline: keep it off the GPUs,
        # whose memory it would otherwise reserve beside the backend's.
        tf.config.set_visible_devices([], "GPU")
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    try:
        config = resolve_config()
        workdir = FLAGS.workdir or os.path.join("runs", config.name)
        strategy = make_strategy(FLAGS.strategy)
    except (ValueError, TypeError) as error:
        exit_with_error(_with_flag(str(error)))
    if FLAGS.print_config:
        print(config.to_json())
        return
    try:
        logging.info(
            "Keras backend %s; %s; workdir %s",
            keras.backend.backend(),
            describe_parallelism(strategy),
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
        exit_with_error(_with_flag(str(error)))
    if "results" in summary:
        print(
            f"\nResults ({config.name}: {config.dataset}, best checkpoints; open-set threshold "
            f"{config.threshold}):\n{summary['results']}"
        )
        print(f"Reports: {os.path.join(workdir, 'eval')}")
    elif FLAGS.stage == "1":
        print(
            f"\nStage 1 done: {Workdir(workdir).model_path(1)}. Evaluate it with\n"
            f"  python trainers/evaluate.py --workdir={workdir} --stage=1\n"
            "or continue with the same flags and --stage=2."
        )


def console_main():
    """The `oltr-train` console script (and `python trainers/train.py`)."""
    run(main, doc=__doc__)


if __name__ == "__main__":
    console_main()
