"""Predictor: one interface over an exported SavedModel, TFLite or ONNX model."""

import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

from keras_oltr.export import graph
from keras_oltr.export.metadata import NUMERIC_OUTPUTS, ExportMetadata, metadata_path


def resolve_saved_model_dir(path):
    """A SavedModel version directory from it, or from its TF Serving model directory.

    ``<out>/<model_name>`` resolves to its highest numeric version.
    """
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [d for d in os.listdir(path) if d.isdigit()] if os.path.isdir(path) else []
    if not versions:
        raise ValueError(
            "Not a SavedModel directory nor a TF Serving model directory with numeric "
            f"versions. Received: path={path!r}"
        )
    return os.path.join(path, max(versions, key=int))


class Predictor:
    """Runs an exported OLTR model of any format on float32 [B, H, W, C] images.

    Use `load_predictor(path)`; the format comes from the path: a directory is a
    SavedModel (a version directory or a TF Serving model directory, whose highest
    version is taken), ``*.tflite`` a TFLite model (run with ai-edge-litert's
    interpreter through its signature runner), ``*.onnx`` an ONNX model (run with
    ONNX Runtime on the CPU).

    Attributes:
        path: the artifact.
        format: "saved_model", "tflite" or "onnx".
        metadata: its `ExportMetadata` (class names, threshold, image shape).
    """

    def __init__(self, path, *, num_threads=None):
        if os.path.isdir(path):
            self.path = resolve_saved_model_dir(path)
            self.format = "saved_model"
        elif path.endswith(".tflite"):
            self.path, self.format = path, "tflite"
        elif path.endswith(".onnx"):
            self.path, self.format = path, "onnx"
        else:
            raise ValueError(
                "The model path must be a SavedModel directory, a .tflite or an .onnx "
                f"file. Received: path={path!r}"
            )
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"No model at {self.path}")
        self.metadata = ExportMetadata.read(metadata_path(self.path))
        self._run = getattr(self, f"_load_{self.format}")(num_threads)

    @property
    def image_shape(self):
        return self.metadata.image_shape

    @property
    def class_names(self):
        return self.metadata.class_names

    def _load_saved_model(self, num_threads):
        del num_threads  # TensorFlow's thread pools are process-wide.
        loaded = tf.saved_model.load(self.path)
        signature = loaded.signatures["serving_default"]

        def run(images):
            outputs = signature(images=tf.constant(images))
            return {k: outputs[k].numpy() for k in NUMERIC_OUTPUTS}

        self._loaded = loaded  # keeps the variables alive
        return run

    def _load_tflite(self, num_threads):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
        # Outputs by name through the signature runner: get_output_details() order is
        # not the signature's.
        runner = interpreter.get_signature_runner("serving_default")

        def run(images):
            outputs = runner(images=images)
            return {k: np.asarray(outputs[k]) for k in NUMERIC_OUTPUTS}

        self._interpreter = interpreter
        return run

    def _load_onnx(self, num_threads):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        session = ort.InferenceSession(
            self.path, sess_options=options, providers=["CPUExecutionProvider"]
        )

        def run(images):
            values = session.run(list(NUMERIC_OUTPUTS), {"images": images})
            return dict(zip(NUMERIC_OUTPUTS, values, strict=True))

        return run

    def check_images(self, images):
        """Returns `images` as a float32 [B, H, W, C] array, or raises ValueError."""
        if not isinstance(images, np.ndarray) or images.dtype != np.float32:
            dtype = getattr(images, "dtype", type(images).__name__)
            raise ValueError(
                "`images` must be a float32 numpy array in [0, 255] (cast uint8 pixels "
                f"with .astype('float32')). Received: dtype={dtype}"
            )
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"`images` must have shape [batch, {', '.join(map(str, self.image_shape))}]. "
                f"Received: images.shape={images.shape}"
            )
        return np.ascontiguousarray(images)

    def predict(self, images):
        """Runs the model.

        Args:
            images: float32 [B, H, W, C] raw pixel values in [0, 255].

        Returns:
            A dict of numpy arrays: logits, probabilities, reachability (NaN for a
            plain model), max_probability, predicted_class (int64, -1 = unknown), and
            class_name (a list of str, "unknown" for -1).
        """
        outputs = self._run(self.check_images(images))
        outputs["predicted_class"] = outputs["predicted_class"].astype(np.int64)
        outputs["class_name"] = [self.metadata.class_name(i) for i in outputs["predicted_class"]]
        return outputs


def load_predictor(path, *, num_threads=None):
    """Opens an exported model of any format (see `Predictor`)."""
    return Predictor(path, num_threads=num_threads)


@dataclasses.dataclass(frozen=True)
class ImageResult:
    """The prediction for one image file, or the error that kept it from one."""

    path: str
    class_name: str | None = None
    predicted_class: int | None = None
    probability: float | None = None
    reachability: float | None = None
    error: str | None = None

    def to_dict(self):
        return dataclasses.asdict(self)


def load_image(path, image_shape):
    """Reads an image file to float32 [H, W, C] in [0, 255], as serve_encoded decodes it.

    Raises:
        ValueError: the file cannot be read or decoded (the message names it).
    """
    if not os.path.isfile(path):
        raise ValueError(f"Cannot read image {path}: no such file")
    try:
        encoded = tf.io.read_file(path)
        return graph.decode_image(encoded, tuple(image_shape)).numpy()
    except (tf.errors.OpError, OSError) as error:
        message = getattr(error, "message", None) or str(error)
        # Keep TensorFlow's reason, not its op and device decorations.
        message = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\].*", "", message)
        raise ValueError(f"Cannot read image {path}: {message.strip()}") from None


def predict_files(predictor, paths, *, batch_size=32):
    """Predicts image files; unreadable ones get an `ImageResult` with `error` set.

    Returns:
        One `ImageResult` per path, in order.
    """
    results = {}
    images, readable = [], []
    for path in paths:
        try:
            images.append(load_image(path, predictor.image_shape))
            readable.append(path)
        except ValueError as error:
            results[path] = ImageResult(path=path, error=str(error))
    for start in range(0, len(readable), batch_size):
        batch = np.stack(images[start : start + batch_size]).astype(np.float32)
        outputs = predictor.predict(batch)
        for i, path in enumerate(readable[start : start + batch_size]):
            results[path] = ImageResult(
                path=path,
                class_name=outputs["class_name"][i],
                predicted_class=int(outputs["predicted_class"][i]),
                probability=float(outputs["max_probability"][i]),
                reachability=float(outputs["reachability"][i]),
            )
    return [results[path] for path in paths]
