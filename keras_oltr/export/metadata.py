"""ExportMetadata: what a deployed OLTR artifact needs beside its graph."""

import dataclasses
import json
import os

import keras_oltr
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
        object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        object.__setattr__(self, "image_shape", tuple(int(d) for d in self.image_shape))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "threshold", float(self.threshold))
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
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in document.items() if k in fields})

    def write(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json() + "\n")

    @classmethod
    def read(cls, path: str) -> "ExportMetadata":
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())


def metadata_path(artifact_path: str) -> str:
    """Where the metadata of an artifact (SavedModel dir, .tflite or .onnx file) lives."""
    if os.path.isdir(artifact_path):
        return os.path.join(artifact_path, SAVED_MODEL_METADATA)
    return artifact_path + ".json"
