"""ONNX conversion of the numeric serving signature with tf2onnx."""

import os

from absl import logging

from keras_oltr.export import graph, staging
from keras_oltr.export.metadata import NUMERIC_OUTPUTS
from keras_oltr.export.saved_model import SERVING_DEFAULT, write_numeric_saved_model

MIN_OPSET = 17


def convert_onnx(
    model,
    out_path,
    class_names,
    *,
    threshold=0.1,
    opset=MIN_OPSET,
    threshold_source="argument",
    source="",
    open_score="msp",
    score_params=None,
    open_validation="",
):
    """Converts a Keras OLTR model to ONNX (from its numeric SavedModel signature).

    The graph has one input ``images`` float32 [batch, H, W, C] in [0, 255] with a
    dynamic batch dimension and the numeric outputs by name (logits, probabilities,
    reachability, max_probability, predicted_class int64). No string output: the
    class list is in ``<out_path>.json``. The model passes ``onnx.checker``.

    Args:
        model: the Keras model (see `export_saved_model`).
        out_path: the .onnx file to write.
        class_names: K class names, written to the metadata.
        threshold: open-set threshold on ``open_score``, baked into predicted_class.
        open_score, score_params, open_validation: the decision's score, its
            parameters and how they were chosen (see `export_saved_model`).
        opset: ONNX opset, at least 17.
        threshold_source, source: provenance, written to the metadata.

    Returns:
        `out_path`.
    """
    import onnx
    import tf2onnx
    from tf2onnx import tf_loader

    if int(opset) < MIN_OPSET:
        raise ValueError(f"`opset` must be >= {MIN_OPSET}. Received: opset={opset}")
    # Checks the model, threshold and score before the (slow) conversion.
    metadata = graph.export_metadata(
        model,
        "onnx",
        class_names,
        threshold=threshold,
        open_score=open_score,
        score_params=score_params,
        threshold_source=threshold_source,
        open_validation=open_validation,
        source=source,
    )
    # Everything is staged beside out_path; a killed conversion's folder is removed
    # by the next export there.
    with staging.staging_folder(os.path.dirname(os.path.abspath(out_path))) as tmp:
        saved_model_dir = write_numeric_saved_model(
            model, os.path.join(tmp, "numeric"), threshold, open_score, score_params
        )
        # Loading the SavedModel (not tracing the Keras call) freezes the constants
        # Keras keeps as captured tensors (e.g. Normalization's mean), which
        # `tf2onnx.convert.from_function` would turn into extra graph inputs.
        graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
            saved_model_dir,
            None,
            None,
            tag=["serve"],
            signatures=[SERVING_DEFAULT],
            return_tensors_to_rename=True,
        )
        model_proto, _ = tf2onnx.convert.from_graph_def(
            graph_def,
            input_names=inputs,
            output_names=outputs,
            opset=int(opset),
            tensors_to_rename=renames,
        )
        names = sorted(o.name for o in model_proto.graph.output)
        if names != sorted(NUMERIC_OUTPUTS):
            raise RuntimeError(
                f"Unexpected ONNX outputs {names}; expected {sorted(NUMERIC_OUTPUTS)}."
            )
        onnx.checker.check_model(model_proto)
        graph.write_file_artifact(
            out_path, model_proto.SerializeToString(), metadata, staging_dir=tmp
        )
    logging.info("Wrote %s (opset %d).", out_path, opset)
    return out_path
