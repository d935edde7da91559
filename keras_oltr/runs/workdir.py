"""`Workdir`: the one object that knows a training run's folder layout.

A run's folder holds::

    config.json                     resolved ExperimentConfig + dataset facts
    stage{N}/checkpoint/            resumable state (see checkpoint.py)
    stage{N}/checkpoint.prev/       the previous good checkpoint (fallback)
    stage{N}/best.keras             best validation accuracy
    stage{N}/latest.keras           end of the stage
    eval/stage{N}/metrics.json      evaluation (and the chosen open-set threshold)
    eval/stage{N}/report.md         the evaluation, readable
    results.md                      both stages' table
    tensorboard/stage{N}/           TensorBoard logs
    export/                         TF Serving SavedModel
    .worker{i}/stage{N}/            non-chief workers' copies (multi-worker runs)
    .run_token                      the chief's token of a multi-worker run's start

Trainer, evaluation, export and benchmarks ask this class for paths, the config,
the models and the threshold; nothing else builds a run path. Every artefact is
written with `atomic_write` (temporary name, fsync, `os.replace`), so a run killed
at any moment leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

from absl import logging

from keras_oltr.runs.atomic import TMP_PREFIX, write_text_atomic
from keras_oltr.runs.checkpoint import read_state
from keras_oltr.runs.errors import (
    CheckpointNotFoundError,
    ConfigMismatchError,
    WorkdirError,
)

STAGES = (1, 2)
STAGE_NAMES = {1: "plain", 2: "oltr"}
CHECKPOINTS = ("best", "latest")
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"  # in an evaluation folder, with REPORT_FILE
REPORT_FILE = "report.md"
# Facts about the dataset that config.json records beside the ExperimentConfig.
DATASET_INFO_KEYS = ("image_size", "channels", "class_names", "data_fingerprints")
# Fields newer than some run folders: absent from an older config.json, they mean what
# those runs did (method "oltr"; data not fingerprinted, so not compared; a bank of
# at most 100 float32 features per class).
NEWER_FIELDS = (
    "method",
    "data_fingerprints",
    "bank_per_class",
    "bank_max_total",
    "bank_dtype",
)
# Config fields a resumed run may change: they do not alter what is trained.
RESUMABLE_CHANGES = ("eval_batch_size", "checkpoint_every_steps", "threshold", "colour_jitter_on")


def check_stage(stage) -> int:
    """Returns `stage` as 1 or 2, else raises ValueError."""
    if stage not in STAGES:
        raise ValueError(f"`stage` must be 1 or 2. Received: stage={stage!r}")
    return int(stage)


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`field: old -> new` for every (dotted) field whose value differs."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict) and key != "dataset_kwargs":
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


class Workdir:
    """A training run's folder: paths, config, models, metrics and threshold.

    Args:
        root: the run folder (`--workdir`).
        worker: index of a non-chief multi-worker process; its files go to
            `<root>/.worker{i}/` (every worker must run the same saves). None or
            0 for the chief.
    """

    def __init__(self, root, *, worker: int | None = None):
        if not root:
            raise ValueError(f"`root` must be a folder path. Received: root={root!r}")
        self.root = os.fspath(root)
        self.worker = int(worker or 0)

    def __repr__(self):
        return f"Workdir({self.root!r})"

    # ------------------------------------------------------------------ paths

    @property
    def config_path(self) -> str:
        return os.path.join(self.root, CONFIG_FILE)

    @property
    def results_path(self) -> str:
        return os.path.join(self.root, "results.md")

    @property
    def run_token_path(self) -> str:
        """Where the chief of a multi-worker run writes a token for its workers to find."""
        return os.path.join(self.root, ".run_token")

    @property
    def export_dir(self) -> str:
        return os.path.join(self.root, "export")

    def stage_dir(self, stage: int) -> str:
        """Where this process writes stage `stage` (the chief's or a worker's copy)."""
        check_stage(stage)
        if self.worker:
            return os.path.join(self.root, f".worker{self.worker}", f"stage{stage}")
        return os.path.join(self.root, f"stage{stage}")

    def checkpoint_dir(self, stage: int) -> str:
        return os.path.join(self.stage_dir(stage), "checkpoint")

    def model_path(self, stage: int, checkpoint: str = "best") -> str:
        """`stage{N}/{best,latest}.keras`."""
        if checkpoint not in CHECKPOINTS:
            raise ValueError(
                f"`checkpoint` must be one of {CHECKPOINTS}. Received: checkpoint={checkpoint!r}"
            )
        return os.path.join(self.stage_dir(stage), f"{checkpoint}.keras")

    def tensorboard_dir(self, stage: int) -> str:
        return os.path.join(self.root, "tensorboard", f"stage{check_stage(stage)}")

    def eval_dir(self, stage: int) -> str:
        return os.path.join(self.root, "eval", f"stage{check_stage(stage)}")

    def metrics_path(self, stage: int) -> str:
        return os.path.join(self.eval_dir(stage), METRICS_FILE)

    @staticmethod
    def stage_name(stage: int, method: str | None = None) -> str:
        """The model names in reports: "plain" (stage 1), the stage-2 method (default "oltr")."""
        stage = check_stage(stage)
        return method if stage == 2 and method else STAGE_NAMES[stage]

    # ----------------------------------------------------------- preparation

    def prepare(self) -> None:
        """Creates the folder; one clear error when it is a file or not writable.

        The run then locks it (`WorkdirLock`) and only then removes the `.tmp-*`
        leftovers of interrupted writes (`clean_tmp`): never another live run's.
        """
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise WorkdirError(f"--workdir is a file, not a folder. Received: {self.root!r}")
        try:
            os.makedirs(self.root, exist_ok=True)
            probe = os.path.join(self.root, f"{TMP_PREFIX}probe-{uuid.uuid4().hex[:8]}")
            with open(probe, "w") as f:
                f.write("")
            os.remove(probe)
        except OSError as error:
            raise WorkdirError(
                f"Cannot write to --workdir {self.root!r}: {error.strerror or error}"
            ) from None

    def clean_tmp(self) -> list[str]:
        """Removes `.tmp-*` files and folders left by interrupted writes; returns them."""
        removed = []
        if not os.path.isdir(self.root):
            return removed
        for folder, dirs, files in os.walk(self.root):
            for name in list(dirs) + files:
                if name.startswith(TMP_PREFIX):
                    path = os.path.join(folder, name)
                    if os.path.isdir(path):
                        shutil.rmtree(path, ignore_errors=True)
                        dirs.remove(name)
                    else:
                        os.remove(path)
                    removed.append(path)
        if removed:
            logging.info("Removed %d leftover temporary file(s) in %s", len(removed), self.root)
        return removed

    # ----------------------------------------------------------------- config

    def has_config(self) -> bool:
        return os.path.isfile(self.config_path)

    def read_config_document(self) -> dict:
        """The raw config.json document."""
        path = self.config_path
        try:
            with open(path, encoding="utf-8") as f:
                document = json.load(f)
        except FileNotFoundError:
            raise WorkdirError(
                f"No config.json in workdir {self.root!r} (expected {path}); is it a "
                "training --workdir?"
            ) from None
        except (OSError, ValueError) as error:
            raise WorkdirError(f"Cannot read {path}: {error}") from None
        if not isinstance(document, dict) or "dataset" not in document:
            raise WorkdirError(f"{path} is not a training config (no 'dataset' field).")
        return document

    def dataset_info(self) -> dict:
        """image_size, channels and class_names recorded at training time."""
        document = self.read_config_document()
        return {k: document[k] for k in DATASET_INFO_KEYS if k in document}

    def config_document(self, config, dataset=None, fingerprints=None) -> dict:
        """What config.json holds for `config` (and `dataset`'s facts).

        ``fingerprints``: {split: digest of its content} (`data.fingerprint`), recorded as
        "data_fingerprints" so that a resume on changed data is refused.
        """
        extra = {}
        if dataset is not None:
            extra = {
                "image_size": dataset.image_size,
                "channels": dataset.channels,
                "class_names": list(dataset.class_names),
            }
        if fingerprints is not None:
            extra["data_fingerprints"] = dict(fingerprints)
        document = json.loads(config.to_json(**extra))
        return document

    def write_config(
        self, config, dataset=None, *, fingerprints=None, resume=True, stage="all"
    ) -> None:
        """Records `config` in config.json, refusing to mix two different runs.

        With an existing config.json the configs must agree (except in
        `RESUMABLE_CHANGES`), or ConfigMismatchError names the differing fields and
        the file is left untouched; data whose fingerprint changed is named by split.
        `resume=False` starts over and replaces the record; with `stage="2"` only the
        stage-2 settings and the method may then change, since the stage-1 model (and
        its data) stays.
        """
        document = self.config_document(config, dataset, fingerprints)
        if self.has_config():
            may_change = RESUMABLE_CHANGES
            if not resume and str(stage) == "2":
                may_change = (*RESUMABLE_CHANGES, "stage2", "method")
            elif not resume:
                may_change = None
            old = self.read_config_document()
            new = {k: v for k, v in document.items() if k in old or k not in NEWER_FIELDS}
            differences = [
                d
                for d in config_differences(old, new)
                if may_change is not None and d.split(":")[0].split(".")[0] not in may_change
            ]
            changed_data = [
                d.split(":")[0].removeprefix("data_fingerprints.")
                for d in differences
                if d.startswith("data_fingerprints.")
            ]
            if changed_data:
                how = "--noresume to start over" if resume else "a new --workdir"
                raise ConfigMismatchError(
                    f"--workdir {self.root} was trained on other data: the content of the "
                    f"{', '.join(changed_data)} split(s) changed since (their split files or "
                    f"images). Restore them, use another --workdir, or {how}."
                )
            if differences:
                how = (
                    "--noresume to start this run over in it"
                    if resume
                    else "a new --workdir: stage 2 builds on this workdir's stage-1 model"
                )
                raise ConfigMismatchError(
                    f"--workdir {self.root} holds a run with another configuration ("
                    + "; ".join(differences)
                    + f"). Use the same flags, another --workdir, or {how}."
                )
            if resume:
                return
        write_text_atomic(
            self.config_path, json.dumps(document, indent=2, sort_keys=True), fault="config"
        )

    # ----------------------------------------------------------------- models

    def require_model(self, stage: int, checkpoint: str = "best") -> str:
        """The path of `stage{N}/{checkpoint}.keras`; explains its absence."""
        path = self.model_path(stage, checkpoint)
        if os.path.isfile(path):
            return path
        state = read_state(self.checkpoint_dir(stage), warn=False)
        if state is not None and checkpoint == "best" and state.get("best_epoch", -1) < 0:
            why = (
                f"stage {stage} ran but never recorded a validation accuracy (it was "
                "interrupted before its first epoch ended): resume it with the same flags."
            )
        elif state is not None:
            why = (
                f"stage {stage} has a checkpoint at step {state.get('global_step')} but its "
                f"{checkpoint}.keras was lost: rerun --stage={stage} with the same flags to "
                "write it again."
            )
        else:
            why = f"stage {stage} has not been trained in this workdir: run --stage={stage} first."
        raise CheckpointNotFoundError(f"No stage-{stage} model {path}: {why}")

    # -------------------------------------------------------- metrics, threshold

    def read_metrics(self, stage: int = 2) -> dict | None:
        """The stage's metrics.json document, or None when there is none."""
        path = self.metrics_path(stage)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            logging.warning("Cannot read %s (%s); ignoring it.", path, error)
            return None

    def threshold_selection(self, stage: int = 2) -> dict | None:
        """The evaluation's `metrics.threshold_selection` dict (threshold, score, ...).

        None when the stage was not evaluated or chose no threshold.
        """
        document = self.read_metrics(stage)
        try:
            selection = document["metrics"]["threshold_selection"]
        except (KeyError, TypeError):
            return None
        return selection if isinstance(selection, dict) else None

    def chosen_threshold(self, stage: int = 2, *, default: float):
        """(threshold, source): the validation-chosen threshold or (default, "default")."""
        selection = self.threshold_selection(stage)
        try:
            return float(selection["threshold"]), f"validation:{self.metrics_path(stage)}"
        except (KeyError, TypeError, ValueError):
            if selection is not None:
                logging.warning(
                    "No threshold in %s; using the default %s.", self.metrics_path(stage), default
                )
            return default, "default"
