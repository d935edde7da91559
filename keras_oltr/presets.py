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
    # feature_dim = the pooled width of a width-4 ResNet-10 (8 x 4), so a use_fc
    # preset's hallucinator still starts from the stage-1 classifier.
    model = dataclasses.replace(config.model, width=4, feature_dim=32)
    if model.backbone != "resnet10":
        model = dataclasses.replace(model, backbone="resnet10", backbone_weights=None)

    def shrink(stage):  # a stage of 0 epochs (a method that does not train) stays so
        return dataclasses.replace(stage, epochs=min(stage.epochs, 2), step_epochs=1)

    return dataclasses.replace(
        config,
        name=config.name + "_smoke",
        model=model,
        stage1=shrink(config.stage1),
        stage2=shrink(config.stage2),
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
# 0.1, 30 epochs; stage 2 backbone frozen (attention and fc train), 30 epochs. The fc
# keeps the pooled width (2048; the reference's is 512 with an fc in its stage 1 too):
# stage 1 here is backbone + classifier, whose kernel initialises the hallucinator.
@register_preset("places_lt")
def places_lt():
    return ExperimentConfig(
        name="places_lt",
        dataset="places_lt",
        batch_size=128,
        model=ModelConfig(
            backbone="resnet152", backbone_weights="imagenet", use_fc=True, feature_dim=2048
        ),
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


# MS1M-LT: the paper states the data (74.5K identities, ~887.5K train images from
# MS1M-ArcFace) and the backbone (a pre-trained ResNet-50; keras.applications' ImageNet
# weights here), nothing else. The rest is ImageNet-LT's reference schedule: stage 1
# 30 epochs lr 0.1 step 10; stage 2 60 epochs, class-aware sampling, backbone 0.1,
# step 20, use_fc on. The fc keeps the pooled width (2048, as ImageNet-LT's 512 is
# ResNet-10's), so the hallucinator starts from the stage-1 classifier; input 112 px
# is the dataset's default (`ms1m_lt`). Stage 2 then has about 498M parameters: 23.6M
# backbone, 8.4M attention, 4.2M each fc and selector, and 3 x 74,500 x 2048
# (centroids, hallucinator, classifier).
@register_preset("ms1m_lt")
def ms1m_lt():
    return ExperimentConfig(
        name="ms1m_lt",
        dataset="ms1m_lt",
        batch_size=128,
        model=ModelConfig(
            backbone="resnet50", backbone_weights="imagenet", use_fc=True, feature_dim=2048
        ),
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
