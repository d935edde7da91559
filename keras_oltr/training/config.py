"""Experiment configuration: frozen dataclasses and named presets.

One preset per experiment (the reference's schedules for the real benchmarks); derived values
such as steps per epoch come from the dataset at run time, never from the config.
"""

import dataclasses
import json
import math

_PRESETS = {}
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
    threshold: float = 0.1
    checkpoint_every_steps: int = 0  # 0: only at epoch ends
    seed: int = 0
    mixed_precision: bool = False
    max_steps_per_epoch: int = 0  # > 0 caps epochs (smoke runs)
    # Where the ImageNet-family flip + colour jitter run (same images either way):
    # "input_pipeline" (tf.data, CPU), "train_step" (inside the compiled step, on
    # the accelerator) or "auto" (train_step when the backend has a GPU/TPU).
    colour_jitter_on: str = "auto"

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


def register_preset(name):
    """Decorator registering a function returning an ExperimentConfig."""

    def decorator(fn):
        _PRESETS[name] = fn
        return fn

    return decorator


def list_presets():
    """Names of the registered presets."""
    return sorted(_PRESETS)


def get_preset(name):
    """The ExperimentConfig of preset `name`."""
    if name not in _PRESETS:
        raise ValueError(f"Unknown preset. Known: {list_presets()}. Received: preset={name!r}")
    return _PRESETS[name]()


def smoke(config):
    """Shrinks any preset to a run of seconds: tiny widths, few steps, both stages."""
    model = dataclasses.replace(config.model, width=4, feature_dim=16)
    if model.backbone != "resnet10":
        model = dataclasses.replace(model, backbone="resnet10", backbone_weights=None)
    shrink = dict(epochs=2, step_epochs=1)
    return dataclasses.replace(
        config,
        name=config.name + "_smoke",
        model=model,
        stage1=dataclasses.replace(config.stage1, **shrink),
        stage2=dataclasses.replace(config.stage2, **shrink),
        batch_size=min(config.batch_size, 32),
        eval_batch_size=min(config.eval_batch_size, 256),
        max_steps_per_epoch=3,
    )


# ImageNet-LT (reference config): ResNet-10 from scratch, stage 1 30 epochs lr 0.1 step 10;
# stage 2 60 epochs, class-aware sampling, backbone 0.01 / heads 0.1 / centroids 0.01,
# step every 20 epochs; use_fc on (the reference's ImageNet-LT stage-2 config).
@register_preset("imagenet_lt")
def imagenet_lt():
    return ExperimentConfig(
        name="imagenet_lt",
        dataset="imagenet_lt",
        batch_size=128,
        model=ModelConfig(use_fc=True),
        stage1=StageConfig(epochs=30, learning_rate=0.1, step_epochs=10),
        stage2=StageConfig(
            epochs=60,
            learning_rate=0.1,
            step_epochs=20,
            sampler="class_aware",
            backbone_lr_multiplier=0.1,
        ),
        checkpoint_every_steps=500,
    )


# Places-LT: ImageNet-pretrained ResNet-152; stage 1 backbone lr 0.001 / classifier
# 0.1, 30 epochs; stage 2 backbone frozen (attention and fc train), 30 epochs.
@register_preset("places_lt")
def places_lt():
    return ExperimentConfig(
        name="places_lt",
        dataset="places_lt",
        batch_size=128,
        model=ModelConfig(backbone="resnet152", backbone_weights="imagenet", use_fc=True),
        stage1=StageConfig(
            epochs=30, learning_rate=0.1, step_epochs=10, backbone_lr_multiplier=0.01
        ),
        stage2=StageConfig(
            epochs=30,
            learning_rate=0.1,
            step_epochs=10,
            sampler="class_aware",
            freeze_backbone=True,
        ),
        checkpoint_every_steps=500,
    )


# CIFAR-100-LT (imbalance 100): ResNet-10 with the small stem at 32 px.
@register_preset("cifar100_lt")
def cifar100_lt():
    return ExperimentConfig(
        name="cifar100_lt",
        dataset="cifar100_lt",
        batch_size=128,
        model=ModelConfig(stem="small", width=64),
        stage1=StageConfig(epochs=60, learning_rate=0.1, schedule="cosine"),
        stage2=StageConfig(
            epochs=30,
            learning_rate=0.1,
            schedule="cosine",
            sampler="class_aware",
            backbone_lr_multiplier=0.1,
        ),
    )


# The embedded benchmark: a narrow small-stem ResNet-10 that trains in minutes on
# 2 CPU cores.
@register_preset("mixed_mnist_lt")
def mixed_mnist_lt():
    return ExperimentConfig(
        name="mixed_mnist_lt",
        dataset="mixed_mnist_lt",
        batch_size=64,
        model=ModelConfig(stem="small", width=16, use_fc=False),
        stage1=StageConfig(epochs=12, learning_rate=0.1, step_epochs=8),
        stage2=StageConfig(
            epochs=8,
            learning_rate=0.1,
            step_epochs=6,
            sampler="class_aware",
            backbone_lr_multiplier=0.1,
        ),
    )


# The second embedded benchmark (another known/open class partition of the same sources):
# the mixed_mnist_lt experiment unchanged, so the two tables compare.
@register_preset("mixed_mnist_lt_b")
def mixed_mnist_lt_b():
    return dataclasses.replace(
        mixed_mnist_lt(), name="mixed_mnist_lt_b", dataset="mixed_mnist_lt_b"
    )
