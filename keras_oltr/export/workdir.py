"""Loading a trained model, its class list and its rejection threshold from a workdir."""

import dataclasses
import json
import os

from absl import logging

from keras_oltr.evaluation.evaluate import CheckpointNotFoundError, WorkdirError
from keras_oltr.evaluation.metrics import DEFAULT_THRESHOLD


@dataclasses.dataclass(frozen=True)
class WorkdirModel:
    """A trained checkpoint with what export needs beside it."""

    model: object
    class_names: tuple
    threshold: float
    threshold_source: str
    config: dict
    checkpoint: str
    open_score: str = "msp"
    score_params: dict = dataclasses.field(default_factory=dict)
    open_validation: str = ""

    def decision_kwargs(self) -> dict:
        """The decision-rule and provenance arguments of every export function."""
        return {
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "open_score": self.open_score,
            "score_params": dict(self.score_params),
            "open_validation": self.open_validation,
            "source": self.checkpoint,
        }


def _selection(workdir, stage):
    """(metrics.threshold_selection dict or None, metrics.json path)."""
    path = os.path.join(workdir, "eval", f"stage{stage}", "metrics.json")
    try:
        with open(path, encoding="utf-8") as f:
            # metrics.json as keras_oltr.evaluation.write_report writes it.
            selection = json.load(f)["metrics"]["threshold_selection"]
        float(selection["threshold"])
        return selection, path
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        logging.warning("No threshold selection in %s (%r); using the default.", path, error)
    return None, path


def validation_threshold(workdir, stage=2):
    """The validation-chosen threshold of ``<workdir>/eval/stage{stage}/metrics.json``.

    Returns:
        (threshold, source): the evaluation's ``metrics.threshold_selection.threshold`` and
        "validation:<path>", or (0.1, "default") when the file or the key is absent.
    """
    selection, path = _selection(workdir, stage)
    if selection is None:
        return DEFAULT_THRESHOLD, "default"
    return float(selection["threshold"]), f"validation:{path}"


def read_config(workdir):
    """The ``<workdir>/config.json`` document written by the trainer."""
    path = os.path.join(workdir, "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise WorkdirError(f"No config.json in workdir {workdir!r} (expected {path}).") from None
    except (OSError, ValueError) as error:
        raise WorkdirError(f"Cannot read {path}: {error!r}") from None


def get_workdir_dataset(config):
    """Rebuilds the training dataset named in a workdir config."""
    from keras_oltr.data import get_dataset

    return get_dataset(config["dataset"], **config.get("dataset_kwargs", {}))


def load_workdir_model(workdir, *, stage=2, checkpoint="best", threshold=None):
    """Loads ``<workdir>/stage{stage}/{checkpoint}.keras`` with class names and threshold.

    Args:
        workdir: a training workdir (config.json, stage1/, stage2/, eval/).
        stage: 1 (plain model) or 2 (OLTR).
        checkpoint: "best" or "latest".
        threshold: explicit threshold on msp; None takes the validation-chosen score
            and threshold (metrics.json's threshold_selection), else msp at 0.1.

    Raises:
        WorkdirError, CheckpointNotFoundError: missing config or checkpoint.
    """
    if stage not in (1, 2):
        raise ValueError(f"`stage` must be 1 or 2. Received: stage={stage!r}")
    config = read_config(workdir)
    path = os.path.join(workdir, f"stage{stage}", f"{checkpoint}.keras")
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(f"No stage-{stage} checkpoint: {path} does not exist.")
    import keras

    import keras_oltr.models  # noqa: F401  (registers the custom layers)

    model = keras.saving.load_model(path, compile=False)
    class_names = config.get("class_names")
    if not class_names:
        class_names = get_workdir_dataset(config).class_names
    open_score, score_params, note = "msp", {}, ""
    if threshold is None:
        selection, metrics_path = _selection(workdir, stage)
        if selection:
            threshold, source = float(selection["threshold"]), f"validation:{metrics_path}"
            # metrics.json written before the open scores existed chose on msp.
            open_score = selection.get("score") or "msp"
            score_params = selection.get("score_params") or {}
            note = selection.get("open_val_note") or ""
        else:
            threshold, source = DEFAULT_THRESHOLD, "default"
            note = "no validation selection: default threshold on msp"
    else:
        source = "argument"
    return WorkdirModel(
        model=model,
        class_names=tuple(class_names),
        threshold=float(threshold),
        threshold_source=source,
        config=config,
        checkpoint=path,
        open_score=open_score,
        score_params=score_params,
        open_validation=note,
    )


def representative_images(dataset, num_images=256, *, seed=0):
    """Up to `num_images` shuffled training images of a `LongTailDataset`.

    They come with the test transform (no augmentation), as the deployed model sees
    images; int8 calibration uses them.
    """
    import numpy as np

    if num_images < 1:
        raise ValueError(f"`num_images` must be positive. Received: num_images={num_images}")
    batch = min(num_images, 64)
    images = []
    for x, _ in dataset.train_dataset(batch, epoch=0, seed=seed, augment=False):
        images.append(x.numpy())
        if sum(len(i) for i in images) >= num_images:
            break
    return np.concatenate(images)[:num_images].astype(np.float32)


def export_workdir_saved_model(
    workdir,
    out_dir,
    *,
    stage=2,
    checkpoint="best",
    threshold=None,
    model_name="oltr",
    version=1,
    warmup=True,
    overwrite=False,
):
    """Exports a workdir's checkpoint as `<out_dir>/<model_name>/<version>/`.

    The threshold defaults to the validation-chosen one (`validation_threshold`).
    Used by export/to_saved_model.py and at the end of a training run.

    Returns:
        (export path, the `WorkdirModel` that was exported).
    """
    from keras_oltr.export.saved_model import export_saved_model

    trained = load_workdir_model(workdir, stage=stage, checkpoint=checkpoint, threshold=threshold)
    path = export_saved_model(
        trained.model,
        out_dir,
        trained.class_names,
        model_name=model_name,
        version=version,
        warmup=warmup,
        overwrite=overwrite,
        **trained.decision_kwargs(),
    )
    return path, trained
