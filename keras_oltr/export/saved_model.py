"""SavedModel export in the TF Serving layout, through Keras' ExportArchive."""

import os
import shutil

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_oltr.data.decode import MAX_PIXELS
from keras_oltr.export import graph, staging
from keras_oltr.export.metadata import (
    NUMERIC_OUTPUTS,
    SAVED_MODEL_METADATA,
    UNKNOWN_CLASS_NAME,
)
from keras_oltr.runs.atomic import fault_point

SERVING_DEFAULT = "serving_default"
SERVE_ENCODED = "serve_encoded"
CLASS_NAMES_ASSET = "class_names.txt"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def _class_table(class_file):
    # A TextFileInitializer makes the file a SavedModel asset: it is copied into
    # assets/ and initialised by the session loader TF Serving uses.
    initializer = tf.lookup.TextFileInitializer(
        class_file,
        key_dtype=tf.int64,
        key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        value_dtype=tf.string,
        value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
    )
    return tf.lookup.StaticHashTable(initializer, default_value=UNKNOWN_CLASS_NAME)


def _build_archive(model, image_shape, outputs_fn, class_file=None, max_pixels=MAX_PIXELS):
    """An ExportArchive with serving_default (+ serve_encoded and class_name with a class file)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    table = None
    if class_file is not None:
        table = _class_table(class_file)
        # ExportArchive collects lookup tables among the descendants of what it
        # tracks (not the tracked object itself), hence the holder.
        holder = tf.Module()
        holder.class_table = table
        archive.track(holder)

    def outputs_for(images):
        outputs = outputs_fn(images)
        if table is not None:
            outputs["class_name"] = table.lookup(outputs["predicted_class"])
        return outputs

    images_spec = tf.TensorSpec((None, *image_shape), tf.float32, name="images")

    @tf.function(input_signature=[images_spec])
    def serving_default(images):
        return outputs_for(graph.assert_images(images, image_shape))

    archive.add_endpoint(SERVING_DEFAULT, serving_default)
    if class_file is not None:

        @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name="encoded_images")])
        def serve_encoded(encoded_images):
            images = graph.decode_images(encoded_images, image_shape, max_pixels=max_pixels)
            return outputs_for(images)

        archive.add_endpoint(SERVE_ENCODED, serve_encoded)
    return archive


def export_saved_model(
    model,
    out_dir,
    class_names,
    *,
    threshold=0.1,
    model_name="oltr",
    version=1,
    threshold_source="argument",
    source="",
    warmup=True,
    overwrite=False,
    max_pixels=MAX_PIXELS,
    open_score="msp",
    score_params=None,
    open_validation="",
):
    """Exports an OLTR (or plain) Keras model for TF Serving.

    Writes ``<out_dir>/<model_name>/<version>/`` (saved_model.pb, variables/,
    assets/class_names.txt, assets.extra/oltr_export.json and, with `warmup`,
    assets.extra/tf_serving_warmup_requests). The version directory is written
    in a staging folder of ``<out_dir>/<model_name>/`` and renamed at the end, so a
    running TF Serving never loads a half-written version; the staging folder of
    a killed export is removed by the next export there (`keras_oltr.export.staging`).

    Signatures:
        serving_default: ``images`` float32 [batch, H, W, C], raw pixel values in
            [0, 255] (normalisation is in the model). One dtype only: uint8 clients
            cast, or send encoded files to serve_encoded. Wrong rank or shape fails
            with an InvalidArgumentError naming the expected shape.
        serve_encoded: ``encoded_images`` string [batch] of JPEG/PNG/GIF/BMP/WebP
            files, decoded to C channels and given evaluation's test transform in the
            graph (`keras_oltr.data.transforms.serving_transform`: above 64 px the
            shorter side is resized to H * 256 / 224, antialiased, and centre-cropped;
            smaller models resize to (H, W)). A file whose header announces more than
            `max_pixels` pixels fails with an InvalidArgumentError before decoding.
        Both return logits [B, K], probabilities [B, K], reachability [B],
        max_probability [B], open_score [B] (the score of the decision),
        predicted_class int64 [B] (-1 when open_score < threshold or the outputs
        are not finite: `open_scores.open_set_decision`) and class_name string [B]
        ("unknown" for -1).

    The stage-1 plain model has no reachability; its reachability output is NaN (and
    metadata has_reachability=false) so that clients see one signature for both
    stages.

    Args:
        model: a built Keras model returning a dict with "logits", "probabilities"
            and, for OLTR, "reachability".
        out_dir: base directory of the model server (the model_base_path's parent).
        class_names: K names, index i for class i.
        threshold: open-set threshold on ``open_score``.
        model_name: TF Serving model name (directory under `out_dir`).
        version: positive integer version directory.
        threshold_source: provenance of the threshold, recorded in the metadata.
        source: provenance of the model, recorded in the metadata.
        warmup: write TF Serving warmup requests.
        overwrite: replace an existing version directory.
        max_pixels: pixel budget (height * width) of one image sent to serve_encoded.
        open_score: the decision's score (`keras_oltr.open_scores`; "msp",
            the paper's rule, by default).
        score_params: its parameters ({"reachability_scale": s'} for msp_rescaled).
        open_validation: how score and threshold were chosen (recorded in metadata).

    Returns:
        The path of the version directory.
    """
    image_shape = graph.model_image_shape(model)
    threshold = graph.check_threshold(threshold, open_score)
    outputs_fn = graph.deployment_outputs_fn(model, threshold, open_score, score_params)
    names = graph.check_class_names(class_names, model)
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive int. Received: version={version!r}")
    if not model_name or os.sep in model_name:
        raise ValueError(f"`model_name` must be a plain name. Received: model_name={model_name!r}")
    model_dir = os.path.join(out_dir, model_name)
    version_dir = os.path.join(model_dir, str(version))
    if os.path.exists(version_dir) and not overwrite:
        raise FileExistsError(
            f"{version_dir} exists; pick another --version or pass --overwrite (overwrite=True)."
        )
    # TF Serving only watches numeric directory names, so the staging folder is
    # invisible to it; a killed export's is removed by the next one (`staging`).
    with staging.staging_folder(model_dir) as tmp:
        # The asset keeps its file name inside assets/, so it is written under that name.
        os.makedirs(os.path.join(tmp, "classes"))
        class_file = os.path.join(tmp, "classes", CLASS_NAMES_ASSET)
        with open(class_file, "w", encoding="utf-8") as f:
            f.write("\n".join(names) + "\n")
        export_dir = os.path.join(tmp, "export")
        archive = _build_archive(model, image_shape, outputs_fn, class_file, max_pixels)
        archive.write_out(export_dir, verbose=False)
        metadata = graph.export_metadata(
            model,
            "saved_model",
            names,
            threshold=threshold,
            open_score=open_score,
            score_params=score_params,
            threshold_source=threshold_source,
            open_validation=open_validation,
            source=source,
            outputs=(*NUMERIC_OUTPUTS, "class_name"),
        )
        metadata.write(os.path.join(export_dir, SAVED_MODEL_METADATA))
        if warmup:
            write_warmup_requests(export_dir, image_shape, model_name=model_name)
        fault_point("export")  # the fault-injection tests' kill before the rename
        if os.path.exists(version_dir):
            shutil.rmtree(version_dir)
        os.replace(export_dir, version_dir)
    logging.info(
        "Exported SavedModel to %s (%s >= %.4g, %s).",
        version_dir,
        open_score,
        threshold,
        threshold_source,
    )
    return version_dir


def write_numeric_saved_model(model, export_dir, threshold, open_score="msp", score_params=None):
    """A SavedModel with only the numeric serving_default: the source for TFLite and ONNX.

    No string table, no run-time assertion and no decoding: the ops that TFLite
    and ONNX converters cannot take.
    """
    image_shape = graph.model_image_shape(model)
    graph.has_reachability(model)
    outputs_fn = graph.deployment_outputs_fn(model, threshold, open_score, score_params)
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec((None, *image_shape), tf.float32, name="images")])
    def serving_default(images):
        return outputs_fn(images)

    archive.add_endpoint(SERVING_DEFAULT, serving_default)
    archive.write_out(export_dir, verbose=False)
    return export_dir


def _encode_png(image):
    return tf.io.encode_png(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)).numpy()


def write_warmup_requests(export_dir, image_shape, *, model_name="oltr", batch_sizes=(1, 8)):
    """Writes assets.extra/tf_serving_warmup_requests (PredictionLog records).

    One PredictRequest per batch size for serving_default (random [0, 255] images)
    and one per batch size for serve_encoded (PNG files of the same images), so TF
    Serving traces both signatures before taking traffic.

    Returns:
        The path of the warmup file.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(path) as writer:
        for batch in batch_sizes:
            images = rng.uniform(0, 255, (batch, *image_shape)).astype(np.float32)
            for signature, key, value in (
                (SERVING_DEFAULT, "images", tf.make_tensor_proto(images)),
                (
                    SERVE_ENCODED,
                    "encoded_images",
                    tf.make_tensor_proto([_encode_png(im) for im in images], dtype=tf.string),
                ),
            ):
                request = predict_pb2.PredictRequest(
                    model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
                )
                request.inputs[key].CopyFrom(value)
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=request)
                )
                writer.write(log.SerializeToString())
    return path


def read_warmup_requests(path):
    """Parses a warmup file back into PredictionLog protos."""
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs
