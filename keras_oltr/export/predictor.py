"""Predictor: one interface over an exported SavedModel, TFLite or ONNX model."""

import dataclasses
import functools
import glob
import os
import re

import numpy as np
import tensorflow as tf

from keras_oltr.data import transforms
from keras_oltr.data.decode import MAX_PIXELS
from keras_oltr.export.errors import ModelFileError
from keras_oltr.export.metadata import NUMERIC_OUTPUTS, ExportMetadata, metadata_path
from keras_oltr.open_scores import UNKNOWN_CLASS

_FORMAT_NAMES = {"saved_model": "SavedModel", "tflite": "TFLite model", "onnx": "ONNX model"}


def resolve_saved_model_dir(path):
    """A SavedModel version directory from it, or from its TF Serving model directory.

    ``<out>/<model_name>`` resolves to its highest numeric version.
    """
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if any(os.path.isdir(os.path.join(path, d)) for d in ("variables", "assets.extra")):
        check_saved_model_files(path)  # a version folder without its graph: names it
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

    Loading checks what a copied or received model can get wrong, each as a
    `ModelFileError` naming the file at fault: a SavedModel's missing files (an
    interrupted copy), a missing or damaged metadata file, metadata of another model
    (format, input shape, number of classes, outputs), and a model file its runtime
    cannot load. An empty batch gives empty outputs without running the model.

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
        if self.format == "saved_model":
            check_saved_model_files(self.path)
        self.metadata = ExportMetadata.read(metadata_path(self.path))
        if self.metadata.format != self.format:
            raise ModelFileError(
                f"The metadata file {metadata_path(self.path)} describes a "
                f"{self.metadata.format} model, but {self.path} is a {self.format} model: "
                "the metadata file belongs to another model."
            )
        # Artifacts written before "open_score" existed lack that output.
        self._outputs = [name for name in NUMERIC_OUTPUTS if name in self.metadata.outputs]
        try:
            self._run = getattr(self, f"_load_{self.format}")(num_threads)
        except (ImportError, ModelFileError):
            raise
        except Exception as error:  # each runtime raises its own types (OpError, IndexError, ...)
            message = _op_error_message(error)[:300] or type(error).__name__
            raise ModelFileError(
                f"Cannot load the {_FORMAT_NAMES[self.format]} {self.path}; it is damaged or "
                f"incomplete (an interrupted copy?): {message}"
            ) from None

    @property
    def image_shape(self):
        return self.metadata.image_shape

    @property
    def class_names(self):
        return self.metadata.class_names

    def _load_saved_model(self, num_threads):
        del num_threads  # TensorFlow's thread pools are process-wide.
        loaded = tf.saved_model.load(self.path)
        if "serving_default" not in loaded.signatures:
            raise ModelFileError(f"The SavedModel {self.path} has no serving_default signature.")
        signature = loaded.signatures["serving_default"]
        self._check_model(
            signature.structured_input_signature[1]["images"].shape,
            {k: v.shape for k, v in signature.structured_outputs.items()},
        )

        def run(images):
            outputs = signature(images=tf.constant(self.check_images(images)))
            return {k: outputs[k].numpy() for k in self._outputs}

        self._loaded = loaded  # keeps the variables alive
        return run

    def _load_tflite(self, num_threads):
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=self.path, num_threads=num_threads)
        # Outputs by name through the signature runner: get_output_details() order is
        # not the signature's.
        runner = interpreter.get_signature_runner("serving_default")
        self._check_model(
            runner.get_input_details()["images"]["shape_signature"],
            {k: v["shape_signature"] for k, v in runner.get_output_details().items()},
        )

        def run(images):
            # The signature runner resizes its input to whatever it is given and then
            # returns numbers for a wrongly shaped image: the shape is checked first.
            outputs = runner(images=self.check_images(images))
            return {k: np.asarray(outputs[k]) for k in self._outputs}

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
        self._check_model(
            session.get_inputs()[0].shape, {o.name: o.shape for o in session.get_outputs()}
        )

        def run(images):
            values = session.run(self._outputs, {"images": self.check_images(images)})
            return dict(zip(self._outputs, values, strict=True))

        return run

    def _check_model(self, input_shape, output_shapes):
        """Raises ModelFileError when the model's graph disagrees with its metadata.

        The input image shape, the number of classes of the logits and the output
        names the metadata lists must all be the graph's.
        """
        where = metadata_path(self.path)
        dims = [int(d) if isinstance(d, (int, np.integer)) and d > 0 else None for d in input_shape]
        if len(dims) != 4 or tuple(dims[1:]) != self.image_shape:
            shown = ", ".join("batch" if d is None else str(d) for d in dims)
            raise ModelFileError(
                f"The model in {self.path} takes images of shape [{shown}], but its "
                f"metadata says [batch, {', '.join(map(str, self.image_shape))}] ({where}): "
                "the metadata file belongs to another model."
            )
        missing = [name for name in self._outputs if name not in output_shapes]
        if missing:
            raise ModelFileError(
                f"The model in {self.path} has no output {', '.join(missing)} that its "
                f"metadata {where} lists: the metadata file belongs to another model."
            )
        logits = list(output_shapes["logits"])
        if not logits or logits[-1] != self.metadata.num_classes:
            raise ModelFileError(
                f"The model in {self.path} has {logits[-1] if logits else '?'} classes, but its "
                f"metadata {where} names {self.metadata.num_classes}: the metadata file "
                "belongs to another model."
            )

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
            plain model), max_probability, open_score (the decision's score, see
            metadata.open_score), predicted_class (int64, -1 = unknown: score below
            the threshold or non-finite outputs), and class_name (a list of str,
            "unknown" for -1).
        """
        images = self.check_images(images)
        if len(images) == 0:
            # Runtimes fail inside on an empty batch (ONNX Runtime's Reshape, XNNPack):
            # the answer is known without them.
            outputs = self._empty_outputs()
        else:
            outputs = self._run(images)
        outputs["predicted_class"] = outputs["predicted_class"].astype(np.int64)
        outputs["class_name"] = [self.metadata.class_name(i) for i in outputs["predicted_class"]]
        return outputs

    def _empty_outputs(self):
        per_class = np.zeros((0, self.metadata.num_classes), np.float32)
        outputs = {name: np.zeros((0,), np.float32) for name in self._outputs}
        outputs.update(logits=per_class, probabilities=per_class.copy())
        outputs["predicted_class"] = np.zeros((0,), np.int64)
        return {name: outputs[name] for name in self._outputs}


def check_saved_model_files(path):
    """Raises ModelFileError naming the file that a SavedModel folder lacks.

    An interrupted copy lacks the variables or some of their shards
    (``variables.data-<i>-of-<n>``); TF's loader would say so in the terms of its
    checkpoint reader. A truncated shard fails inside the loader, and the Predictor
    reports that too as a ModelFileError.
    """
    variables = os.path.join(path, "variables")
    shards = glob.glob(os.path.join(variables, "variables.data-?????-of-?????"))
    totals = {int(name[-5:]) for name in shards if name[-5:].isdigit()} or {1}
    required = [os.path.join(path, "saved_model.pb"), os.path.join(variables, "variables.index")]
    for total in sorted(totals):
        required += [
            os.path.join(variables, f"variables.data-{i:05d}-of-{total:05d}") for i in range(total)
        ]
    for name in required:
        if not os.path.isfile(name):
            raise ModelFileError(
                f"The SavedModel {path} is incomplete: {name} is missing (an interrupted "
                "copy?). Copy the whole version folder again."
            )


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
    open_score_name: str | None = None  # the score that decides "unknown"
    open_score: float | None = None
    threshold: float | None = None  # rejected ("unknown") when open_score < threshold
    rejected: bool | None = None
    error: str | None = None

    def to_dict(self):
        return dataclasses.asdict(self)


@functools.lru_cache(maxsize=8)
def _serving_transform_fn(image_shape, max_pixels):
    # One graph per (shape, budget): the assertions report in graph form, and a traced
    # function is much faster than running the transform op by op.
    return tf.function(
        lambda encoded: transforms.serving_transform(encoded, image_shape, max_pixels=max_pixels),
        input_signature=[tf.TensorSpec([], tf.string)],
    )


def _op_error_message(error):
    message = getattr(error, "message", None) or str(error)
    # Keep TensorFlow's reason, not its op, graph and device decorations.
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    message = re.sub(r"\s*\[\[\{\{node .*|\s*\[Op:\w+\].*", "", message, flags=re.S)
    message = re.sub(r"^assertion failed: \[(.*?)\](?: \[(.*)\])?$", r"\1 \2", message.strip())
    return " ".join(message.split())


def load_image(path, image_shape, *, max_pixels=MAX_PIXELS):
    """Reads an image file to float32 [H, W, C] in [0, 255], as serve_encoded decodes it.

    The same preprocessing as evaluation and the SavedModel's serve_encoded
    (`keras_oltr.data.transforms.serving_transform`), including the check of the
    header's size against `max_pixels` before anything is decoded.

    Raises:
        ValueError: the file cannot be read or decoded, or is too large (the message
            names it).
    """
    if not os.path.isfile(path):
        raise ValueError(f"Cannot read image {path}: no such file")
    transform = _serving_transform_fn(tuple(int(d) for d in image_shape), int(max_pixels))
    try:
        return transform(tf.io.read_file(path)).numpy()
    except (tf.errors.OpError, OSError) as error:
        raise ValueError(f"Cannot read image {path}: {_op_error_message(error)}") from None


def iter_predict_files(predictor, paths, *, batch_size=32, max_pixels=MAX_PIXELS):
    """Yields one `ImageResult` per path, in order, decoding `batch_size` files at a time.

    At most one batch of decoded images is held in memory; unreadable or too large
    files get an `ImageResult` with `error` set and the others are still classified.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}"
        )
    paths = list(paths)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images, results = [], {}
        for i, path in enumerate(chunk):
            try:
                images.append((i, load_image(path, predictor.image_shape, max_pixels=max_pixels)))
            except ValueError as error:
                results[i] = ImageResult(path=path, error=str(error))
        if images:
            outputs = predictor.predict(np.stack([image for _, image in images]))
            metadata = predictor.metadata
            # Artifacts written before "open_score" existed decide on max probability.
            scores = outputs.get("open_score", outputs["max_probability"])
            for row, (i, _) in enumerate(images):
                predicted = int(outputs["predicted_class"][row])
                results[i] = ImageResult(
                    path=chunk[i],
                    class_name=outputs["class_name"][row],
                    predicted_class=predicted,
                    probability=float(outputs["max_probability"][row]),
                    reachability=float(outputs["reachability"][row]),
                    open_score_name=metadata.open_score,
                    open_score=float(scores[row]),
                    threshold=float(metadata.threshold),
                    rejected=predicted == UNKNOWN_CLASS,
                )
        yield from (results[i] for i in range(len(chunk)))


def predict_files(predictor, paths, *, batch_size=32, max_pixels=MAX_PIXELS):
    """Predicts image files; unreadable ones get an `ImageResult` with `error` set.

    Decodes lazily, `batch_size` files at a time (see `iter_predict_files`).

    Returns:
        One `ImageResult` per path, in order.
    """
    return list(iter_predict_files(predictor, paths, batch_size=batch_size, max_pixels=max_pixels))
