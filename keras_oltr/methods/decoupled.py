"""The decoupling methods that retrain a classifier on stage 1's frozen backbone.

Kang et al., "Decoupling Representation and Classifier for Long-Tailed
Recognition" (ICLR 2020): cRT re-initialises the linear classifier and retrains it
with class-balanced sampling; LWS keeps W and b and learns a per-class scale f_k,
logits_k = f_k (W_k . x + b_k). Balanced Softmax (Ren et al., NeurIPS 2020) in its
decoupled form fine-tunes the stage-1 classifier with the Balanced Softmax loss
(CE on logits + log pi) under instance-balanced sampling (class-balanced sampling
would compensate the prior twice) and predicts with the plain logits. In all three
the backbone is frozen (its BatchNorm statistics included), whatever the config says.

Their schedule (`classifier_stage2`) follows the paper's configs
(facebookresearch/classifier-balancing, ImageNet-LT): cRT 10 epochs, LWS 5, cosine
decay, SGD with momentum 0.9 and weight decay 5e-4, learning rate 0.2 at batch 512
(Places-LT: 0.1 at 256, the same per image), class-aware sampling of 4 images per
class. Here the epochs keep the paper's ratio to keras_oltr's ImageNet-LT stage 1 (30
epochs): cRT stage1/3, LWS stage1/6, at least 1 (ImageNet-LT and Places-LT: 10 and 5;
mixed_mnist_lt: 4 and 2); the learning rate scales linearly with the batch.
"""

import dataclasses

from keras_oltr.config import StageConfig
from keras_oltr.methods.registry import register_method
from keras_oltr.models import build_plain_model, init_plain_from_stage1
from keras_oltr.training import compile_for_stage, steps_per_epoch

REFERENCE_STAGE1_EPOCHS = 30  # keras_oltr's ImageNet-LT stage 1
REFERENCE_LEARNING_RATE = 0.2  # classifier-balancing's, at batch 512
REFERENCE_BATCH_SIZE = 512
CLASS_BALANCED_SAMPLES_PER_CLASS = 4


def classifier_stage2(config, epochs_at_reference, *, sampler="class_aware", tau=0.0):
    """The stage-2 schedule of a classifier-retraining method for preset ``config``.

    Args:
        config: the preset's ExperimentConfig.
        epochs_at_reference: the method's epochs after keras_oltr's 30-epoch
            ImageNet-LT stage 1 (cRT 10, LWS 5), scaled to ``config.stage1.epochs``.
        sampler: "class_aware" (cRT, LWS) or "random" (Balanced Softmax).
        tau: the class-prior-aware CE's tau (1: Balanced Softmax).
    """
    epochs = round(config.stage1.epochs * epochs_at_reference / REFERENCE_STAGE1_EPOCHS)
    return StageConfig(
        epochs=max(1, epochs),
        learning_rate=REFERENCE_LEARNING_RATE * config.batch_size / REFERENCE_BATCH_SIZE,
        schedule="cosine",
        momentum=0.9,
        weight_decay=5e-4,
        sampler=sampler,
        samples_per_class=CLASS_BALANCED_SAMPLES_PER_CLASS,
        freeze_backbone=True,
        large_margin_weight=0.0,
        tau=tau,
    )


def _train_classifier(context, *, head, copy_classifier, frozen):
    """Builds the plain model with ``head`` from stage 1, freezes ``frozen``, trains stage 2."""
    config, dataset = context.config, context.dataset
    with context.strategy.scope():
        model = build_plain_model(
            dataset.num_classes,
            context.input_shape,
            **context.model_kwargs(),
            name=f"{config.method}_model",
            head=head,
        )
        init_plain_from_stage1(model, context.stage1_model(), classifier=copy_classifier)
        for name in ("backbone", *frozen):
            model.get_layer(name).trainable = False
        stage2 = dataclasses.replace(config.stage2, freeze_backbone=True)
        compile_for_stage(model, stage2, dataset.train_counts, steps_per_epoch(dataset, config))
    return context.train(2, model)


def _crt_schedule(config):
    return classifier_stage2(config, 10)


def _lws_schedule(config):
    return classifier_stage2(config, 5)


def _balanced_softmax_schedule(config):
    return classifier_stage2(config, 10, sampler="random", tau=1.0)


@register_method("crt", stage2=_crt_schedule)
def crt(context):
    """Classifier re-training: a freshly initialised W, b on the frozen backbone."""
    return _train_classifier(context, head="linear", copy_classifier=False, frozen=())


@register_method("lws", stage2=_lws_schedule)
def lws(context):
    """Learnable weight scaling: f_k (W_k . x + b_k), W, b and the backbone frozen."""
    return _train_classifier(
        context, head="scaled_linear", copy_classifier=True, frozen=("classifier",)
    )


@register_method("balanced_softmax", stage2=_balanced_softmax_schedule)
def balanced_softmax(context):
    """The stage-1 classifier fine-tuned with the Balanced Softmax loss (tau = stage2.tau)."""
    return _train_classifier(context, head="linear", copy_classifier=True, frozen=())
