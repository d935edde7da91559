"""Converts a trained workdir's checkpoint to TFLite, in one or more precisions.

    python export/to_tflite.py --workdir=runs/mnist --out=tflite \
        --quantization=float32,float16,dynamic_int8,int8

writes tflite/oltr_<quantization>.tflite, each with <file>.json beside it (class
names, open score and threshold, input shape). Full-integer int8 is calibrated on
training images. A user error ends with one line on stderr and exit status 2.
"""

import os

from absl import flags

from keras_oltr import export
from keras_oltr.cli import run
from keras_oltr.export import cli

_FLAGS = cli.define_workdir_flags()
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_QUANTIZATION = flags.DEFINE_list(
    "quantization",
    ["float32"],
    f"Precisions to write, comma-separated, from {','.join(export.QUANTIZATIONS)}.",
)
flags.register_validator(
    "quantization",
    lambda values: bool(values) and all(v in export.QUANTIZATIONS for v in values),
    message=f"--quantization takes a comma-separated list from {','.join(export.QUANTIZATIONS)}",
)
_CALIBRATION = flags.DEFINE_integer("num_calibration", 256, "Training images for int8.")
_NAME = flags.DEFINE_string("name", "oltr", "File name prefix.")
flags.mark_flag_as_required("out")


def _convert():
    trained = cli.load_from_flags(_FLAGS)
    calibration = None
    if "int8" in _QUANTIZATION.value:
        calibration = export.representative_images(
            export.get_workdir_dataset(trained.config), _CALIBRATION.value
        )
    for quantization in dict.fromkeys(_QUANTIZATION.value):
        path = os.path.join(_OUT.value, f"{_NAME.value}_{quantization}.tflite")
        export.convert_tflite(
            trained.model,
            path,
            trained.class_names,
            quantization=quantization,
            representative_images=calibration,
            **trained.decision_kwargs(),
        )
        print(f"{path} ({os.path.getsize(path)} bytes)")


def console_main():
    """The `oltr-export-tflite` console script (and `python export/to_tflite.py`)."""
    run(cli.main_of(_convert), doc=__doc__)


if __name__ == "__main__":
    console_main()
