"""Loading a trained model, its class list and its rejection threshold from a workdir.

The run layout itself (paths, config.json, metrics.json) is `keras_oltr.runs.Workdir`'s.
"""

import dataclasses
import json

import numpy as np

from keras_oltr.data import get_dataset
from keras_oltr.export.saved_model import export_saved_model
from keras_oltr.models import check_model_matches, load_stage_model
from keras_oltr.open_scores import MSP, PAPER_THRESHOLD
from keras_oltr.runs import Workdir, WorkdirError, check_stage


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


def validation_threshold(workdir, stage=2):
    """The validation-chosen threshold of the stage's evaluation (`Workdir.chosen_threshold`).

    Returns:
        (threshold, source): the evaluation's ``metrics.threshold_selection.threshold`` and
        "validation:<metrics.json path>", or (0.1, "default") when it is absent.
    """
    return Workdir(workdir).chosen_threshold(stage, default=PAPER_THRESHOLD)


def read_config(workdir):
    """The ``config.json`` document written by the trainer (raises WorkdirError)."""
    return Workdir(workdir).read_config_document()


def get_workdir_dataset(config):
    """Rebuilds the training dataset named in a workdir config."""
    return get_dataset(config["dataset"], **config.get("dataset_kwargs", {}))


def _check_metrics_file(path, stage):
    """Refuses a damaged metrics.json: ignoring it would export another decision rule."""
    try:
        with open(path, encoding="utf-8") as f:
            json.load(f)
    except FileNotFoundError:
        return
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split())[:200]
        raise WorkdirError(
            f"{path} is damaged ({reason}), so the open score and threshold chosen on "
            f"validation are unknown: rerun the evaluation (oltr-evaluate --stage={stage}) "
            "or pass --threshold."
        ) from None


def load_workdir_model(workdir, *, stage=2, checkpoint="best", threshold=None):
    """Loads the stage's ``{checkpoint}.keras`` with class names and threshold.

    Args:
        workdir: a training workdir (config.json, stage1/, stage2/, eval/).
        stage: 1 (plain model) or 2 (OLTR).
        checkpoint: "best" or "latest".
        threshold: explicit threshold on msp; None takes the validation-chosen score
            and threshold (metrics.json's threshold_selection), else msp at 0.1.

    Raises:
        WorkdirError, CheckpointNotFoundError, CheckpointDamagedError: missing config,
            missing or unreadable checkpoint, a damaged metrics.json (when the
            threshold comes from it).
        ConfigMismatchError: a model whose classes or input size are not the run's.
    """
    run = Workdir(workdir)
    stage = check_stage(stage)
    config = run.read_config_document()
    model = load_stage_model(run, stage, checkpoint)
    class_names = config.get("class_names")
    if not class_names:  # config.json of older runs: the dataset names the classes
        class_names = get_workdir_dataset(config).class_names
        check_model_matches(
            model,
            run.model_path(stage, checkpoint),
            class_names=class_names,
            recorded_in=f"dataset {config['dataset']!r} of {run.config_path}",
        )
    open_score, score_params, note = MSP, {}, ""
    if threshold is None:
        _check_metrics_file(run.metrics_path(stage), stage)
        threshold, source = validation_threshold(workdir, stage)
        selection = run.threshold_selection(stage) if source != "default" else None
        if selection:
            # metrics.json written before the open scores existed chose on msp.
            open_score = selection.get("score") or MSP
            score_params = selection.get("score_params") or {}
            note = selection.get("open_val_note") or ""
        else:
            note = "no validation selection: default threshold on msp"
    else:
        source = "argument"
    return WorkdirModel(
        model=model,
        class_names=tuple(class_names),
        threshold=float(threshold),
        threshold_source=source,
        config=config,
        checkpoint=run.model_path(stage, checkpoint),
        open_score=open_score,
        score_params=score_params,
        open_validation=note,
    )


def representative_images(dataset, num_images=256, *, seed=0):
    """Up to `num_images` shuffled training images of a `LongTailDataset`.

    They come with the test transform (no augmentation), as the deployed model sees
    images; int8 calibration uses them.
    """
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
