"""Graph pieces shared by every export format: input checks, decoding, open-set head."""

import math
import os

import tensorflow as tf

from keras_oltr import open_scores
from keras_oltr.data import decode, transforms
from keras_oltr.export import staging
from keras_oltr.export.metadata import NUMERIC_OUTPUTS, ExportMetadata
from keras_oltr.open_scores import MSP, MSP_RESCALED

# Name scopes of the deployment head in every exported graph.
OPEN_SCORE_SCOPE = "open_score"
DECISION_SCOPE = "open_set_decision"


def check_threshold(threshold, open_score=MSP) -> float:
    """Validates an open-set threshold: finite; in [0, 1] for the probability scores."""
    threshold = float(threshold)
    bounded = open_score in (MSP, MSP_RESCALED)
    if not math.isfinite(threshold) or (bounded and not 0.0 <= threshold <= 1.0):
        where = "lie in [0, 1]" if bounded else "be finite"
        raise ValueError(
            f"`threshold` must {where} for the {open_score!r} score. "
            f"Received: threshold={threshold}"
        )
    return threshold


def model_image_shape(model) -> tuple:
    """(H, W, C) of a single-input Keras model with a fully known image shape."""
    shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else ()
    if len(shape) != 3 or any(d is None for d in shape):
        raise ValueError(
            "The model must take one image input of known shape [batch, H, W, C]. "
            f"Received: input shapes={[tuple(t.shape) for t in model.inputs]}"
        )
    return tuple(int(d) for d in shape)


def check_class_names(class_names, model) -> list:
    """The K class names of ``model`` as strings: one per logit, each a non-empty line."""
    num_classes = int(model.output["logits"].shape[-1])
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(
            f"`class_names` must name the model's {num_classes} classes. "
            f"Received: len(class_names)={len(names)}"
        )
    bad = [n for n in names if not n or "\n" in n or "\r" in n]
    if bad:
        raise ValueError(f"Class names must be non-empty single lines. Received: {bad[:3]!r}")
    return names


def has_reachability(model) -> bool:
    """True for the stage-2 OLTR model, False for the stage-1 plain model."""
    outputs = model.output if isinstance(model.output, dict) else {}
    if "logits" not in outputs or "probabilities" not in outputs:
        raise ValueError(
            "The model must return a dict with 'logits' and 'probabilities' (an OLTR "
            f"or plain model). Received: outputs={sorted(outputs) or type(model.output)}"
        )
    return "reachability" in outputs


def assert_images(images, image_shape):
    """Returns `images` after a run-time check of [batch, H, W, C]; fails with a clear message.

    Signature inputs are not shape-checked by the runtime (a loaded signature happily
    takes [H, W, C]), so the check is part of the graph.
    """
    shape = tf.shape(images)
    # Padding with -1 keeps the rank test dynamic: with the declared rank 4, grappler
    # folds tf.rank / tf.size(shape) and a tf.cond on them to constants.
    padded = tf.concat([shape, tf.fill([4], -1)], axis=0)
    ok = tf.logical_and(
        tf.equal(tf.math.count_nonzero(tf.not_equal(padded, -1)), 4),
        tf.reduce_all(tf.equal(padded[1:4], tf.constant(image_shape, tf.int32))),
    )
    height, width, channels = image_shape
    message = (
        f"`images` must be float32 [batch, {height}, {width}, {channels}] with values in "
        "[0, 255]. Received shape:"
    )
    with tf.control_dependencies([tf.debugging.Assert(ok, [message, shape], summarize=8)]):
        # EnsureShape as a second line, should the assertion ever be optimised away.
        return tf.ensure_shape(tf.identity(images), (None, *image_shape))


def decode_image(encoded, image_shape, *, max_pixels=decode.MAX_PIXELS):
    """Decodes one JPEG/PNG/GIF/BMP/WebP string to float32 [H, W, C] in [0, 255].

    Evaluation's own transform (`keras_oltr.data.transforms.serving_transform`): the
    header's size is checked against `max_pixels` before decoding, the image is
    converted to C channels and gets the test transform of the model size (shorter
    side to H * 256 / 224 and centre crop above 64 px, else a resize to (H, W)).
    """
    return transforms.serving_transform(encoded, image_shape, max_pixels=max_pixels)


def decode_images(encoded, image_shape, *, max_pixels=decode.MAX_PIXELS):
    """Decodes a [batch] string tensor of encoded images to float32 [batch, H, W, C]."""
    return tf.map_fn(
        lambda s: decode_image(s, image_shape, max_pixels=max_pixels),
        encoded,
        fn_output_signature=tf.TensorSpec(image_shape, tf.float32),
    )


def open_set_outputs(model_outputs, threshold, *, open_score=MSP, score_context=None, scale=None):
    """The numeric deployment outputs from a model's output dict.

    Args:
        model_outputs: the model's output dict.
        threshold: the threshold of ``open_score``.
        open_score: the score the decision uses (`keras_oltr.open_scores`).
        score_context: `open_scores.score_context(model)` for the OLTR scores.
        scale: s' of "msp_rescaled".

    Returns a dict: logits [B, K], probabilities [B, K], reachability [B] (NaN for a
    model without it), max_probability [B], open_score [B] (the decision's score),
    predicted_class [B] int64 (`open_scores.open_set_decision`: -1 when the score is below the
    threshold or not finite).
    """
    probabilities = model_outputs["probabilities"]
    max_probability = tf.reduce_max(probabilities, axis=-1)
    # Named scopes: int8 TFLite keeps these ops in float32 (`litert.FLOAT_HEAD_SCOPES`).
    with tf.name_scope(OPEN_SCORE_SCOPE):
        score = open_scores.compute_score(open_score, model_outputs, score_context, scale=scale)
    with tf.name_scope(DECISION_SCOPE):
        # The top-1 class with the runtime's own argmax (ties: the lowest index);
        # keras.ops' argmax adds sign-bit ops that TFLite lacks.
        top1 = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        predicted = open_scores.open_set_decision(
            top1, score, threshold, valid=open_scores.finite_rows(probabilities)
        )
    if "reachability" in model_outputs:
        reachability = model_outputs["reachability"]
    else:
        reachability = tf.fill(tf.shape(max_probability), float("nan"))
    return {
        "logits": model_outputs["logits"],
        "probabilities": probabilities,
        "reachability": reachability,
        "max_probability": max_probability,
        "open_score": tf.cast(score, tf.float32),
        "predicted_class": predicted,
    }


def check_open_score(model, open_score, score_params=None):
    """Validates that ``model`` provides ``open_score``; returns (context, scale)."""
    open_scores.check_score_name(open_score)
    context = open_scores.score_context(model)
    available = open_scores.available_scores(model.output, context)
    if open_score not in available:
        raise ValueError(
            f"This model cannot give the {open_score!r} open score (it gives {list(available)}). "
            f"Received: open_score={open_score!r}"
        )
    scale = None
    if open_score == MSP_RESCALED:
        scale = float((score_params or {}).get("reachability_scale", float("nan")))
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(
                "msp_rescaled needs score_params={'reachability_scale': s'} with s' > 0. "
                f"Received: score_params={score_params!r}"
            )
    return context, scale


def deployment_outputs_fn(model, threshold, open_score=MSP, score_params=None):
    """A function images -> `open_set_outputs` for ``model`` with the chosen decision rule."""
    threshold = check_threshold(threshold, open_score)
    context, scale = check_open_score(model, open_score, score_params)

    def outputs_for(images):
        return open_set_outputs(
            model(images, training=False),
            threshold,
            open_score=open_score,
            score_context=context,
            scale=scale,
        )

    return outputs_for


def export_metadata(
    model,
    fmt,
    class_names,
    *,
    threshold,
    open_score=MSP,
    score_params=None,
    threshold_source="argument",
    open_validation="",
    source="",
    quantization="float32",
    outputs=NUMERIC_OUTPUTS,
):
    """The `ExportMetadata` of ``model`` exported as ``fmt`` with its decision rule."""
    reachability = has_reachability(model)  # checks the output dict first
    return ExportMetadata(
        format=fmt,
        class_names=check_class_names(class_names, model),
        threshold=check_threshold(threshold, open_score),
        threshold_source=threshold_source,
        open_score=open_score,
        score_params=score_params or {},
        open_validation=open_validation,
        image_shape=model_image_shape(model),
        has_reachability=reachability,
        quantization=quantization,
        outputs=outputs,
        source=source,
    )


def write_file_artifact(out_path, data, metadata, *, staging_dir=None):
    """Writes a single-file model (bytes) and ``<out_path>.json`` atomically.

    Each is written in a staging folder beside ``out_path`` (``staging_dir``, or a
    new one) and renamed over the target, so a kill leaves either the previous pair
    or the new file, never a truncated one; the metadata is written last. A killed
    export's staging folder is removed by the next export into the same folder.
    """
    folder = os.path.dirname(os.path.abspath(out_path))
    if staging_dir is None:
        with staging.staging_folder(folder) as tmp:
            return write_file_artifact(out_path, data, metadata, staging_dir=tmp)
    for path, payload in ((out_path, data), (out_path + ".json", metadata.to_json() + "\n")):
        tmp = os.path.join(staging_dir, os.path.basename(path))
        mode = "wb" if isinstance(payload, bytes) else "w"
        try:
            with open(tmp, mode) as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return out_path
