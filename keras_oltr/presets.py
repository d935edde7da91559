"""Named experiment presets: one `ExperimentConfig` per experiment.

The reference's schedules for the real benchmarks and the embedded benchmarks' own.
A new experiment is one function decorated with `register_preset`.
"""

import dataclasses

from keras_oltr.config import ExperimentConfig, ModelConfig, StageConfig
from keras_oltr.registry import Registry

_PRESETS = Registry("preset")


def register_preset(name):
    """Decorator registering a function returning an ExperimentConfig."""
    return _PRESETS.register(name)


def list_presets():
    """Names of the registered presets."""
    return _PRESETS.names()


def get_preset(name):
    """The ExperimentConfig of preset `name`."""
    return _PRESETS.get(name)()


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
