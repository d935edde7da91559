"""TFLite (LiteRT) conversion of the numeric serving signature."""

import os
import warnings

import numpy as np
import tensorflow as tf
from absl import logging

from keras_oltr.export import graph, staging
from keras_oltr.export.metadata import QUANTIZATIONS
from keras_oltr.export.saved_model import SERVING_DEFAULT, write_numeric_saved_model


def _representative_dataset(images, num_samples):
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(
            "`representative_images` must be a non-empty float32 [N, H, W, C] array. "
            f"Received: shape={images.shape}"
        )
    samples = images[:num_samples]

    def generator():
        for image in samples:
            yield {"images": image[None]}

    return generator


# Ops of the OLTR head (distances, reachability, squash, cosine normalisation, the
# nearest-neighbour similarities) and of the deployment head (the open score and the
# decision: comparisons with a threshold and with infinity) that int8 cannot carry:
# see _quantize_backbone_only.
FLOAT_HEAD_SCOPES = (
    "meta_embedding",
    "classifier",
    "/pool",
    "probabilities",
    "nearest_neighbour_score",
    graph.OPEN_SCORE_SCOPE,
    graph.DECISION_SCOPE,
)
_FLOAT_OPS = ["DIV", "SQRT", "RSQRT"]


def _quantize_backbone_only(converter, flatbuffer):
    """Re-quantises with the OLTR head left in float32 (selective quantisation).

    Fully int8, the squared distances to the centroids share one int8 scale with
    their largest values (e.g. a step of 17 for a range of 0..4000), so the nearest
    distance of an input close to a centroid rounds to zero and the reachability
    division fails ("tflite/kernels/div.cc ... data[i] != zero_point", seen in CI).
    The head costs little next to the backbone, so it stays float: every tensor of the
    meta-embedding, the classifier, the nearest-neighbour score, the open score, the
    decision and the outputs, and every DIV/SQRT/RSQRT. Quantised, the decision's
    `sum(|p|) < inf` and `score >= threshold` compared int8 values whose scales
    differ by 10^38, and the decision of an image changed with its batch.
    """
    from ai_edge_litert.interpreter import Interpreter

    names = [t["name"] for t in Interpreter(model_content=flatbuffer).get_tensor_details()]
    head = [
        n
        for n in names
        if n.startswith("StatefulPartitionedCall") or any(s in n for s in FLOAT_HEAD_SCOPES)
    ]
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=head, denylisted_ops=_FLOAT_OPS
    )
    # convert() wrapped the generator function in a RepresentativeDataset.
    dataset = getattr(converter.representative_dataset, "input_gen", None)
    dataset = dataset or converter.representative_dataset
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=dataset,
        debug_options=options,
    )
    return debugger.get_nondebug_quantized_model()


def convert_tflite(
    model,
    out_path,
    class_names,
    *,
    quantization="float32",
    threshold=0.1,
    representative_images=None,
    num_calibration_samples=256,
    threshold_source="argument",
    source="",
    open_score="msp",
    score_params=None,
    open_validation="",
):
    """Converts a Keras OLTR model to a .tflite file with one "serving_default" signature.

    The signature takes ``images`` float32 [batch, H, W, C] in [0, 255] and returns the
    numeric outputs (logits, probabilities, reachability, max_probability,
    open_score, predicted_class int64); TFLite has no string outputs, so the class list is in
    ``<out_path>.json`` (`ExportMetadata`). Inputs and outputs stay float32 in every
    mode, so callers need not know the quantisation parameters.

    Args:
        model: the Keras model (see `export_saved_model`).
        out_path: the .tflite file to write.
        class_names: K class names, written to the metadata.
        quantization: "float32"; "float16" (weights stored as float16);
            "dynamic_int8" (int8 weights, float activations); "int8" (int8 weights
            and activations calibrated on `representative_images` for the backbone
            and attention, a float32 OLTR head: see `_quantize_backbone_only`).
        threshold: open-set threshold on ``open_score``, baked into predicted_class.
        open_score, score_params, open_validation: the decision's score, its
            parameters and how they were chosen (see `export_saved_model`).
        representative_images: float32 [N, H, W, C] training images in [0, 255];
            required for "int8".
        num_calibration_samples: how many of them calibrate the int8 ranges.
        threshold_source, source: provenance, written to the metadata.

    Returns:
        `out_path`.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}. "
            f"Received: quantization={quantization!r}"
        )
    if quantization == "int8" and representative_images is None:
        raise ValueError(
            "Full-integer int8 needs calibration images. Received: representative_images=None"
        )
    # Checks the model, threshold and score before the (slow) conversion.
    metadata = graph.export_metadata(
        model,
        "tflite",
        class_names,
        threshold=threshold,
        open_score=open_score,
        score_params=score_params,
        threshold_source=threshold_source,
        open_validation=open_validation,
        source=source,
        quantization=quantization,
    )
    # Everything is staged beside out_path; a killed conversion's folder is removed
    # by the next export there.
    with staging.staging_folder(os.path.dirname(os.path.abspath(out_path))) as tmp:
        saved_model_dir = write_numeric_saved_model(
            model, os.path.join(tmp, "numeric"), threshold, open_score, score_params
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=[SERVING_DEFAULT]
        )
        if quantization != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantization == "int8":
            converter.representative_dataset = _representative_dataset(
                representative_images, num_calibration_samples
            )
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,
            ]
        with warnings.catch_warnings():
            # Calibration runs TF's own deprecated tf.lite.Interpreter internally.
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            flatbuffer = converter.convert()
            if quantization == "int8":
                flatbuffer = _quantize_backbone_only(converter, flatbuffer)
        graph.write_file_artifact(out_path, flatbuffer, metadata, staging_dir=tmp)
    logging.info("Wrote %s (%s, %d bytes).", out_path, quantization, len(flatbuffer))
    return out_path
