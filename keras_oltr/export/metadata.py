"""ExportMetadata: what a deployed OLTR artifact needs beside its graph."""

import dataclasses
import json
import math
import os

import keras_oltr
from keras_oltr.export.errors import ModelFileError
from keras_oltr.open_scores import UNKNOWN_CLASS

# The numeric outputs every format returns; SavedModel signatures add "class_name".
NUMERIC_OUTPUTS = (
    "logits",
    "probabilities",
    "reachability",
    "max_probability",
    "open_score",
    "predicted_class",
)
# What every artifact returns ("open_score" is newer than some).
REQUIRED_OUTPUTS = ("logits", "probabilities", "reachability", "max_probability", "predicted_class")
UNKNOWN_CLASS_NAME = "unknown"
FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("float32", "float16", "dynamic_int8", "int8")
SAVED_MODEL_METADATA = os.path.join("assets.extra", "oltr_export.json")


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
    """Description of one exported artifact, written as JSON beside it.

    For a SavedModel it is ``<version dir>/assets.extra/oltr_export.json``; for a
    TFLite or ONNX file ``<file>.json`` (e.g. ``model.tflite.json``). The class list
    lives here for the formats that cannot return strings (TFLite, ONNX).

    Attributes:
        format: one of `FORMATS`.
        class_names: the K known class names; index i is predicted class i.
        threshold: open-set threshold baked into the graph: predicted_class is -1
            ("unknown") when open_score < threshold or the outputs are not finite.
        threshold_source: where the threshold came from ("argument",
            "validation:<metrics.json path>" or "default").
        open_score: the score the decision uses (`keras_oltr.open_scores`;
            "msp" is the paper's max softmax probability), returned as "open_score".
        score_params: the score's parameters ({"reachability_scale": s'} for
            "msp_rescaled").
        open_validation: how the score and threshold were chosen, e.g. that no open
            validation data was used.
        image_shape: (H, W, C) of the float32 [0, 255] images the graph takes.
        has_reachability: False for the stage-1 plain model, whose reachability
            output is NaN.
        quantization: one of `QUANTIZATIONS` (float32 for SavedModel and ONNX).
        outputs: names of the graph's outputs.
        source: free-form provenance (checkpoint path, workdir).
    """

    format: str
    class_names: tuple
    threshold: float
    image_shape: tuple
    has_reachability: bool
    quantization: str = "float32"
    threshold_source: str = "argument"
    open_score: str = "msp"
    score_params: dict = dataclasses.field(default_factory=dict)
    open_validation: str = ""
    outputs: tuple = NUMERIC_OUTPUTS
    source: str = ""
    keras_oltr_version: str = keras_oltr.__version__

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"`format` must be one of {FORMATS}. Received: format={self.format!r}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(
                f"`quantization` must be one of {QUANTIZATIONS}. "
                f"Received: quantization={self.quantization!r}"
            )
        # Checked field by field: the file may come from elsewhere (see `read`).
        names = self.class_names
        if not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f"`class_names` must be a non-empty list. Received: {names!r:.80}")
        shape = self.image_shape
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
        ):
            raise ValueError(f"`image_shape` must be 3 positive ints. Received: {shape!r:.80}")
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(f"`threshold` must be a number. Received: {threshold!r:.80}")
        if not math.isfinite(threshold):
            raise ValueError(f"`threshold` must be finite. Received: {threshold!r}")
        if not isinstance(self.has_reachability, bool):
            raise ValueError(
                f"`has_reachability` must be true or false. Received: {self.has_reachability!r:.80}"
            )
        if not isinstance(self.outputs, (list, tuple)) or not all(
            isinstance(o, str) for o in self.outputs
        ):
            raise ValueError(f"`outputs` must be a list of names. Received: {self.outputs!r:.80}")
        missing = [name for name in REQUIRED_OUTPUTS if name not in self.outputs]
        if missing:
            raise ValueError(f"`outputs` lacks {', '.join(missing)}")
        if not isinstance(self.score_params or {}, dict):
            raise ValueError(f"`score_params` must be a dict. Received: {self.score_params!r:.80}")
        object.__setattr__(self, "class_names", tuple(str(n) for n in names))
        object.__setattr__(self, "image_shape", tuple(int(d) for d in shape))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "threshold", float(threshold))
        object.__setattr__(self, "score_params", dict(self.score_params or {}))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_name(self, index: int) -> str:
        """Name of a predicted class index; "unknown" for -1."""
        return UNKNOWN_CLASS_NAME if int(index) == UNKNOWN_CLASS else self.class_names[int(index)]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ExportMetadata":
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError(f"not a JSON object but {type(document).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in document
        ]
        if missing:
            raise ValueError(f"no {', '.join(missing)} field")
        return cls(**{k: v for k, v in document.items() if k in fields})

    def write(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json() + "\n")

    @classmethod
    def read(cls, path: str) -> "ExportMetadata":
        """Reads and checks a metadata file.

        Raises:
            ModelFileError: the file is missing, unreadable, not UTF-8 JSON, or a field
                is missing or invalid; the message names the file.
        """
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_json(f.read())
        except FileNotFoundError:
            raise ModelFileError(
                f"Missing {path}, the metadata file an exported model needs beside it (its "
                "class names, input shape and decision rule): copy it with the model."
            ) from None
        except (OSError, ValueError, TypeError) as error:  # JSON and UTF-8 errors are ValueErrors
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            raise ModelFileError(
                f"The metadata file {path} is damaged ({reason}): copy it again from the "
                "export that wrote the model."
            ) from None


def metadata_path(artifact_path: str) -> str:
    """Where the metadata of an artifact (SavedModel dir, .tflite or .onnx file) lives."""
    if os.path.isdir(artifact_path):
        return os.path.join(artifact_path, SAVED_MODEL_METADATA)
    return artifact_path + ".json"
