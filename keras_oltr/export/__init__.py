"""Deployment: SavedModel for TF Serving, TFLite, ONNX, and one predictor for all three.

`export_saved_model` writes the TF Serving layout with the serving_default and
serve_encoded signatures; `convert_tflite` / `convert_onnx` write the numeric outputs
with the class list beside the file; `load_predictor` runs any of them.
"""

from keras_oltr.data.decode import MAX_PIXELS
from keras_oltr.export.errors import ModelFileError
from keras_oltr.export.graph import decode_image, open_set_outputs
from keras_oltr.export.litert import convert_tflite
from keras_oltr.export.metadata import (
    NUMERIC_OUTPUTS,
    QUANTIZATIONS,
    UNKNOWN_CLASS_NAME,
    ExportMetadata,
    metadata_path,
)
from keras_oltr.export.onnx_model import convert_onnx
from keras_oltr.export.predictor import (
    ImageResult,
    Predictor,
    check_saved_model_files,
    iter_predict_files,
    load_image,
    load_predictor,
    predict_files,
    resolve_saved_model_dir,
)
from keras_oltr.export.saved_model import (
    SERVE_ENCODED,
    SERVING_DEFAULT,
    export_saved_model,
    read_warmup_requests,
    write_warmup_requests,
)
from keras_oltr.export.workdir import (
    WorkdirModel,
    export_workdir_saved_model,
    get_workdir_dataset,
    load_workdir_model,
    representative_images,
    validation_threshold,
)

__all__ = [
    "export_workdir_saved_model",
    "MAX_PIXELS",
    "NUMERIC_OUTPUTS",
    "QUANTIZATIONS",
    "SERVE_ENCODED",
    "SERVING_DEFAULT",
    "UNKNOWN_CLASS_NAME",
    "ExportMetadata",
    "ImageResult",
    "ModelFileError",
    "Predictor",
    "WorkdirModel",
    "check_saved_model_files",
    "convert_onnx",
    "convert_tflite",
    "decode_image",
    "export_saved_model",
    "get_workdir_dataset",
    "iter_predict_files",
    "load_image",
    "load_predictor",
    "load_workdir_model",
    "metadata_path",
    "open_set_outputs",
    "predict_files",
    "read_warmup_requests",
    "representative_images",
    "resolve_saved_model_dir",
    "validation_threshold",
    "write_warmup_requests",
]
