"""Builders for the stage-1 plain model and the stage-2 OLTR model."""

import keras
import numpy as np

from keras_oltr.layers._validation import check_positive_float, check_positive_int
from keras_oltr.layers.class_scale import ClassScale
from keras_oltr.layers.cosine_classifier import CosineClassifier
from keras_oltr.layers.logit_adjustment import LogitAdjustment
from keras_oltr.layers.meta_embedding import MetaEmbedding
from keras_oltr.layers.modulated_attention import ModulatedAttention
from keras_oltr.layers.nearest_neighbour_score import NearestNeighbourScore
from keras_oltr.layers.tau_normalised_dense import TauNormalisedDense
from keras_oltr.models.backbones import get_backbone
from keras_oltr.models.oltr_model import OLTRModel


def _check_input_shape(input_shape):
    if len(input_shape) != 3 or any(not isinstance(d, int) or d <= 0 for d in input_shape):
        raise ValueError(
            f"`input_shape` must be (H, W, C) of positive ints. Received: input_shape={input_shape}"
        )
    return tuple(input_shape)


# The classifier heads of the plain architecture (stage 1 and the decoupling methods).
PLAIN_HEADS = ("linear", "scaled_linear", "tau_normalised", "adjusted_linear")


def build_plain_model(
    num_classes,
    input_shape,
    backbone="resnet10",
    backbone_options=None,
    name="plain_model",
    *,
    head="linear",
    tau=1.0,
):
    """Stage 1: backbone + global average pool + Dense(K) with bias, or a variant head.

    Args:
        head: "linear" (Dense(K) with bias: stage 1, cRT, Balanced Softmax);
            "scaled_linear" (the Dense, then a learnable per-class `ClassScale`: LWS);
            "tau_normalised" (`TauNormalisedDense` with ``tau``: tau-norm);
            "adjusted_linear" (the Dense, then `LogitAdjustment` with ``tau``).
            The classifier layer is named "classifier" in every variant.
        tau: of the "tau_normalised" and "adjusted_linear" heads.

    Returns an OLTRModel whose outputs are a dict: "logits", "probabilities" and
    "direct_feature" (the pooled feature).
    """
    num_classes = check_positive_int("num_classes", num_classes)
    input_shape = _check_input_shape(input_shape)
    if head not in PLAIN_HEADS:
        raise ValueError(f"`head` must be one of {PLAIN_HEADS}. Received: head={head!r}")
    images = keras.Input(input_shape, name="images")
    feature_map = get_backbone(backbone, input_shape, **(backbone_options or {}))(images)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool", dtype="float32")(feature_map)
    if head == "tau_normalised":
        classifier = TauNormalisedDense(num_classes, tau, name="classifier", dtype="float32")
    else:
        classifier = keras.layers.Dense(num_classes, name="classifier", dtype="float32")
    logits = classifier(pooled)
    if head == "scaled_linear":
        logits = ClassScale(name="class_scale", dtype="float32")(logits)
    elif head == "adjusted_linear":
        logits = LogitAdjustment(tau, name="logit_adjustment", dtype="float32")(logits)
    probabilities = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
    outputs = {"logits": logits, "probabilities": probabilities, "direct_feature": pooled}
    return OLTRModel(images, outputs, name=name)


def build_oltr_model(
    num_classes,
    input_shape,
    backbone="resnet10",
    backbone_options=None,
    *,
    use_attention=True,
    use_fc=False,
    feature_dim=512,
    reachability_scale=10.0,
    classifier_scale=16.0,
    stage1_model=None,
    name="oltr_model",
):
    """Stage 2: backbone [+ ModulatedAttention] + pool [+ fc] + MetaEmbedding + CosineClassifier.

    Args:
        num_classes: known classes K.
        input_shape: (H, W, C) of the raw [0, 255] images.
        backbone, backbone_options: registry name and options (as for stage 1).
        use_attention: put ModulatedAttention on the last feature map.
        use_fc: the reference's ImageNet-LT `use_fc`: v_direct = ReLU(Dense(feature_dim)
            (pooled)), newly initialised at stage 2.
        feature_dim: width of that fc.
        reachability_scale: s in s / gamma (10).
        classifier_scale: cosine classifier scale (16).
        stage1_model: the trained plain model; its backbone weights are copied and its
            classifier initialises the hallucinator (as the reference does).

    Returns an OLTRModel with outputs "logits", "probabilities", "reachability",
    "direct_feature", "meta_embedding", "memory_feature", "selector".
    """
    num_classes = check_positive_int("num_classes", num_classes)
    input_shape = _check_input_shape(input_shape)
    check_positive_float("reachability_scale", reachability_scale)
    check_positive_float("classifier_scale", classifier_scale)
    images = keras.Input(input_shape, name="images")
    backbone_model = get_backbone(backbone, input_shape, **(backbone_options or {}))
    feature_map = backbone_model(images)
    if use_attention:
        feature_map = ModulatedAttention(name="modulated_attention")(feature_map)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool", dtype="float32")(feature_map)
    direct = pooled
    if use_fc:
        check_positive_int("feature_dim", feature_dim)
        direct = keras.layers.Dense(
            feature_dim, activation="relu", name="feature_fc", dtype="float32"
        )(pooled)
    meta = MetaEmbedding(
        num_classes, reachability_scale=reachability_scale, name="meta_embedding", dtype="float32"
    )(direct)
    logits = CosineClassifier(
        num_classes, scale=classifier_scale, name="classifier", dtype="float32"
    )(meta["meta_embedding"])
    probabilities = keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
    outputs = {
        "logits": logits,
        "probabilities": probabilities,
        "reachability": meta["reachability"],
        "direct_feature": direct,
        "meta_embedding": meta["meta_embedding"],
        "memory_feature": meta["memory_feature"],
        "selector": meta["selector"],
    }
    model = OLTRModel(images, outputs, name=name)
    if stage1_model is not None:
        init_from_stage1(model, stage1_model)
    return model


def _copy_backbone(model, stage1_model):
    source, target = stage1_model.get_layer("backbone"), model.get_layer("backbone")
    if [w.shape for w in source.get_weights()] != [w.shape for w in target.get_weights()]:
        raise ValueError(
            "The stage-1 backbone does not match the stage-2 backbone (different "
            "architecture, width or input shape)."
        )
    return lambda: target.set_weights(source.get_weights())


def init_plain_from_stage1(model, stage1_model, *, classifier=True):
    """Copies the stage-1 backbone (and, with ``classifier``, its W and b) into ``model``.

    ``model`` is a `build_plain_model` of any head; a "tau_normalised" classifier
    takes W alone (tau-normalisation drops the bias). With ``classifier=False`` the
    classifier keeps its fresh initialisation (cRT).
    """
    copy_backbone = _copy_backbone(model, stage1_model)
    kernel, bias = stage1_model.get_layer("classifier").get_weights()
    target = model.get_layer("classifier")
    if classifier and tuple(target.kernel.shape) != kernel.shape:
        raise ValueError(
            "The stage-1 classifier does not match the stage-2 one. Received: stage1 "
            f"classifier kernel shape={kernel.shape}, stage 2={tuple(target.kernel.shape)}"
        )
    copy_backbone()  # only once both checks passed
    if classifier and isinstance(target, TauNormalisedDense):
        target.set_kernel(kernel)
    elif classifier:
        target.set_weights([kernel, bias])


def init_from_stage1(oltr_model, stage1_model):
    """Copies the stage-1 backbone and initialises the hallucinator from its classifier."""
    source, target = stage1_model.get_layer("backbone"), oltr_model.get_layer("backbone")
    src_weights = source.get_weights()
    tgt_shapes = [w.shape for w in target.get_weights()]
    if [w.shape for w in src_weights] != tgt_shapes:
        raise ValueError(
            "The stage-1 backbone does not match the stage-2 backbone (different "
            "architecture, width or input shape)."
        )
    kernel, bias = stage1_model.get_layer("classifier").get_weights()
    hallucinator = oltr_model.get_layer("meta_embedding").hallucinator
    if hallucinator.kernel.shape != kernel.shape:
        raise ValueError(
            "Cannot initialise the hallucinator from the stage-1 classifier: shapes "
            f"{tuple(hallucinator.kernel.shape)} and {kernel.shape} differ. Received: "
            f"stage1 classifier kernel shape={kernel.shape}"
        )
    target.set_weights(src_weights)  # only once both checks passed
    hallucinator.set_weights([kernel, bias])


def with_nearest_neighbour_score(model, bank, k=1, name=None, bank_dtype="float32"):
    """`model` with one more output, "knn_similarity": the NearestNeighbourScore.

    The score is the cosine similarity of the direct feature to its k-th nearest
    feature in `bank` (training features, e.g. `train_feature_bank`); the new model
    shares every layer and weight of `model` and adds the bank as non-trainable
    weights (stored as `bank_dtype`), so evaluation and every export compute the
    same score.
    """
    bank = np.asarray(bank)
    if "direct_feature" not in model.output:
        raise ValueError("The model must return a 'direct_feature' output.")
    layer = NearestNeighbourScore(
        len(bank), k=k, bank_dtype=bank_dtype, name="nearest_neighbour_score"
    )
    outputs = dict(model.output)
    outputs["knn_similarity"] = layer(outputs["direct_feature"])
    layer.set_bank(bank)
    return OLTRModel(model.input, outputs, name=name or model.name)
