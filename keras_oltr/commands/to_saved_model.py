"""Exports a trained workdir's checkpoint as a SavedModel in the TF Serving layout.

    python export/to_saved_model.py --workdir=runs/mnist --out=serving [--threshold=0.2] \
        [--stage=2] [--version=1] [--model_name=oltr]

writes serving/oltr/1/ with the serving_default (float32 images in [0, 255]) and
serve_encoded (JPEG/PNG strings) signatures. predicted_class / class_name use the open
score and threshold the evaluation chose on validation data (metrics.json's
threshold_selection), else the max probability at 0.1; assets.extra/oltr_export.json
records which. A user error ends with one line on stderr and exit status 2.
"""

from absl import flags

from keras_oltr import export
from keras_oltr.cli import run
from keras_oltr.export import cli

_FLAGS = cli.define_workdir_flags()
_OUT = flags.DEFINE_string("out", None, "Model server base directory.")
_VERSION = flags.DEFINE_integer("version", 1, "TF Serving version directory.")
_MODEL_NAME = flags.DEFINE_string("model_name", "oltr", "TF Serving model name.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
_WARMUP = flags.DEFINE_bool("warmup", True, "Write TF Serving warmup requests.")
flags.mark_flag_as_required("out")


def _export():
    trained = cli.load_from_flags(_FLAGS)
    path = export.export_saved_model(
        trained.model,
        _OUT.value,
        trained.class_names,
        model_name=_MODEL_NAME.value,
        version=_VERSION.value,
        warmup=_WARMUP.value,
        overwrite=_OVERWRITE.value,
        **trained.decision_kwargs(),
    )
    print(f"{path} ({trained.open_score} >= {trained.threshold:g}, {trained.threshold_source})")


def console_main():
    """The `oltr-export-saved-model` console script (and `python export/to_saved_model.py`)."""
    run(cli.main_of(_export), doc=__doc__)


if __name__ == "__main__":
    console_main()
