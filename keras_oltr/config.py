"""Experiment configuration: frozen dataclasses, validated on construction.

Derived values such as steps per epoch come from the dataset at run time, never from
the config. The named presets are `keras_oltr.presets`'. Every leaf field is settable
from the command line by its dotted name (`--config.stage2.epochs=60`;
`leaf_fields` lists them).
"""

import dataclasses
import json
import math

from keras_oltr.layers import BANK_DTYPES, DEFAULT_BANK_PER_CLASS
from keras_oltr.open_scores import PAPER_THRESHOLD
from keras_oltr.runs import Workdir, WorkdirError
from keras_oltr.runs.workdir import DATASET_INFO_KEYS

SAMPLERS = ("random", "class_aware")
SCHEDULES = ("step", "cosine")
COLOUR_JITTER_PLACES = ("auto", "input_pipeline", "train_step")


def _check(ok, field, value, rule):
    if not ok:
        raise ValueError(f"`{field}` must be {rule}. Received: {field}={value!r}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture shared by both stages."""

    backbone: str = "resnet10"
    width: int = 64  # resnet10 only
    stem: str = "imagenet"  # resnet10 only: "imagenet" or "small"
    backbone_weights: str | None = None  # resnet50/152: None, "imagenet" or a path
    use_attention: bool = True
    use_fc: bool = False
    feature_dim: int = 512
    reachability_scale: float = 10.0
    classifier_scale: float = 16.0

    def backbone_options(self, sync_bn=False):
        """Options for keras_oltr.models.get_backbone."""
        if self.backbone == "resnet10":
            return {"width": self.width, "stem": self.stem, "sync_bn": sync_bn}
        return {"weights": self.backbone_weights}


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """Optimisation of one stage (SGD with momentum, as the reference)."""

    epochs: int = 30
    learning_rate: float = 0.1  # of the classifier/heads; other groups use multipliers
    schedule: str = "step"  # "step" (x gamma every step_epochs) or "cosine"
    step_epochs: int = 10
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    sampler: str = "random"  # or "class_aware"
    samples_per_class: int = 4
    backbone_lr_multiplier: float = 1.0
    centroid_lr_multiplier: float = 0.1  # stage 2: centroids lr 0.01 for lr 0.1
    freeze_backbone: bool = False
    large_margin_weight: float = 0.01  # stage 2 only
    tau: float = 0.0  # > 0: class-prior-aware CE (1 = Balanced Softmax)

    def validate(self, prefix=""):
        """Raises ValueError naming the first invalid field (`prefix` + its name).

        `epochs=0` is valid: the stage does not train and saves its initial model
        (stage 2: stage-1 weights with fresh centroids) as best and latest.
        """
        _check(_is_int(self.epochs) and self.epochs >= 0, prefix + "epochs", self.epochs, ">= 0")
        _check(
            _is_number(self.learning_rate) and self.learning_rate > 0,
            prefix + "learning_rate",
            self.learning_rate,
            "positive and finite",
        )
        _check(self.schedule in SCHEDULES, prefix + "schedule", self.schedule, f"in {SCHEDULES}")
        _check(
            _is_int(self.step_epochs) and self.step_epochs >= 1,
            prefix + "step_epochs",
            self.step_epochs,
            ">= 1",
        )
        _check(_is_number(self.gamma) and self.gamma > 0, prefix + "gamma", self.gamma, "> 0")
        _check(
            _is_number(self.momentum) and 0 <= self.momentum < 1,
            prefix + "momentum",
            self.momentum,
            "in [0, 1)",
        )
        for name in ("weight_decay", "backbone_lr_multiplier", "centroid_lr_multiplier", "tau"):
            value = getattr(self, name)
            _check(_is_number(value) and value >= 0, prefix + name, value, ">= 0 and finite")
        _check(
            _is_number(self.large_margin_weight) and self.large_margin_weight >= 0,
            prefix + "large_margin_weight",
            self.large_margin_weight,
            ">= 0 and finite",
        )
        _check(self.sampler in SAMPLERS, prefix + "sampler", self.sampler, f"in {SAMPLERS}")
        _check(
            _is_int(self.samples_per_class) and self.samples_per_class >= 1,
            prefix + "samples_per_class",
            self.samples_per_class,
            ">= 1",
        )


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A whole two-stage OLTR experiment."""

    name: str
    dataset: str
    dataset_kwargs: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 128  # global
    eval_batch_size: int = 256
    model: ModelConfig = ModelConfig()
    stage1: StageConfig = StageConfig()
    stage2: StageConfig = StageConfig()
    threshold: float = PAPER_THRESHOLD
    checkpoint_every_steps: int = 0  # 0: only at epoch ends
    seed: int = 0
    mixed_precision: bool = False
    max_steps_per_epoch: int = 0  # > 0 caps epochs (smoke runs)
    # Where the ImageNet-family flip + colour jitter run (same images either way):
    # "input_pipeline" (tf.data, CPU), "train_step" (inside the compiled step, on
    # the accelerator) or "auto" (train_step when the backend has a GPU/TPU).
    colour_jitter_on: str = "auto"
    # The stage-2 long-tail method, a name registered in keras_oltr.methods.
    method: str = "oltr"
    # The nearest-neighbour bank written after stage 2: at most `bank_per_class` train
    # features per class, that cap lowered until the bank holds at most
    # `bank_max_total` features (0: no total cap; `keras_oltr.layers.bank_cap`),
    # stored as `bank_dtype` ("float32", or "float16" for half the memory).
    bank_per_class: int = DEFAULT_BANK_PER_CLASS
    bank_max_total: int = 0
    bank_dtype: str = "float32"

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raises ValueError naming the first invalid field.

        `max_steps_per_epoch=0` means no cap and `checkpoint_every_steps=0` means
        checkpoints only at epoch ends; negative values are errors.
        """
        for name in ("batch_size", "eval_batch_size"):
            value = getattr(self, name)
            _check(_is_int(value) and value >= 1, name, value, "a positive integer")
        for name in ("checkpoint_every_steps", "max_steps_per_epoch", "seed"):
            value = getattr(self, name)
            _check(_is_int(value) and value >= 0, name, value, "an integer >= 0")
        _check(
            _is_number(self.threshold) and 0 <= self.threshold <= 1,
            "threshold",
            self.threshold,
            "in [0, 1]",
        )
        _check(
            self.colour_jitter_on in COLOUR_JITTER_PLACES,
            "colour_jitter_on",
            self.colour_jitter_on,
            f"in {COLOUR_JITTER_PLACES}",
        )
        _check(isinstance(self.method, str) and bool(self.method), "method", self.method, "a name")
        _check(
            _is_int(self.bank_per_class) and self.bank_per_class >= 1,
            "bank_per_class",
            self.bank_per_class,
            "a positive integer",
        )
        _check(
            _is_int(self.bank_max_total) and self.bank_max_total >= 0,
            "bank_max_total",
            self.bank_max_total,
            "an integer >= 0",
        )
        _check(self.bank_dtype in BANK_DTYPES, "bank_dtype", self.bank_dtype, f"in {BANK_DTYPES}")
        self.stage1.validate("stage1.")
        self.stage2.validate("stage2.")

    def to_json(self, **extra):
        """The config as pretty JSON (config.json); `extra` adds top-level facts."""
        return json.dumps(dataclasses.asdict(self) | extra, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d):
        """Inverse of dataclasses.asdict; raises ValueError naming an unknown field."""
        d = dict(d)
        parts = {"model": ModelConfig, "stage1": StageConfig, "stage2": StageConfig}
        for key, part in [(None, cls), *parts.items()]:
            fields = {f.name for f in dataclasses.fields(part)}
            given = d if key is None else d.get(key, {})
            unknown = sorted(set(given) - fields)
            if unknown:
                where = "" if key is None else f"{key}."
                raise ValueError(f"Unknown config field(s): {[where + u for u in unknown]}")
        for key, part in parts.items():
            d[key] = part(**d.get(key, {}))
        return cls(**d)

    @classmethod
    def from_workdir(cls, workdir):
        """The `ExperimentConfig` recorded in a run's config.json (raises WorkdirError)."""
        workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
        document = workdir.read_config_document()
        try:
            return cls.from_dict({k: v for k, v in document.items() if k not in DATASET_INFO_KEYS})
        except (TypeError, ValueError) as error:
            raise WorkdirError(f"{workdir.config_path} is not a valid config: {error}") from None


def leaf_fields(cls=None, prefix=""):
    """{dotted name: type} of every settable leaf field of `ExperimentConfig`.

    Nested dataclasses (model, stage1, stage2) are walked; `dataset_kwargs` (a free
    dict, set with --dataset_arg) is not a leaf.
    """
    cls = cls or ExperimentConfig
    out = {}
    for field in dataclasses.fields(cls):
        kind = field.type
        if dataclasses.is_dataclass(kind):
            out.update(leaf_fields(kind, f"{prefix}{field.name}."))
        elif kind is not dict:
            out[prefix + field.name] = kind
    return out


def with_overrides(config, overrides):
    """``config`` with ``{dotted field: value}`` replaced (validated by construction)."""
    nested = {}
    for dotted, value in overrides.items():
        head, _, rest = dotted.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            nested[head] = value
    changes = {}
    for name, value in nested.items():
        if isinstance(value, dict):
            changes[name] = with_overrides(getattr(config, name), value)
        else:
            changes[name] = value
    return dataclasses.replace(config, **changes)
