"""The callbacks of a stage's `fit`: mid-epoch checkpoints and the end of an epoch.

An epoch ends in a fixed order: validation, the log line and TensorBoard, best.keras
(best validation accuracy), then the checkpoint that marks the epoch done. A kill
between best.keras and the checkpoint reruns the epoch and writes the same best.keras.
A NaN/Inf loss or weight stops training before anything of that epoch is saved.
"""

import math
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_oltr.inference import inference_function
from keras_oltr.training.validation import validate


def weights_finite(model):
    """Whether every variable of ``model`` is finite."""
    return all(np.all(np.isfinite(keras.ops.convert_to_numpy(v))) for v in model.weights)


def _fmt_pct(value):
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


class StageProgress(keras.callbacks.Callback):
    """Checkpoints, validates and logs one stage; stops on a non-finite loss.

    Args:
        stage: 1 or 2 (for the log lines).
        epochs: the stage's configured epochs.
        steps_per_epoch: optimizer steps per epoch.
        state: the stage's state dict (global_step, best_val_accuracy, best_epoch,
            history), updated in place.
        save_checkpoint: fn(state) writing the resumable checkpoint.
        save_best: fn() writing best.keras.
        dataset, eval_batch_size: what validation runs on.
        writer: a TensorBoard summary writer, or None on non-chief workers.
        checkpoint_every_steps: also checkpoint every this many steps (0: never
            inside an epoch; never at an epoch's last step, which the epoch end owns).
    """

    def __init__(
        self,
        stage,
        epochs,
        steps_per_epoch,
        state,
        *,
        save_checkpoint,
        save_best,
        dataset,
        eval_batch_size,
        writer=None,
        checkpoint_every_steps=0,
    ):
        super().__init__()
        self.stage, self.epochs, self.steps = stage, epochs, steps_per_epoch
        self.state = state
        self.save_checkpoint, self.save_best = save_checkpoint, save_best
        self.dataset, self.eval_batch_size = dataset, eval_batch_size
        self.writer, self.every = writer, checkpoint_every_steps
        self.non_finite_step = None
        self.non_finite_epoch = None
        self._predict_fn = None
        self._start = time.time()

    def _stop(self, step, epoch):
        self.non_finite_step, self.non_finite_epoch = step, epoch + 1
        self.model.stop_training = True

    def on_train_begin(self, logs=None):
        self._predict_fn = inference_function(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self.state["global_step"] += 1
        step = self.state["global_step"]
        epoch = (step - 1) // self.steps
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(step, epoch)
            return
        if self.every and step % self.every == 0 and step % self.steps:
            if weights_finite(self.model):
                self.save_checkpoint(dict(self.state))
            else:
                self._stop(step, epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self.non_finite_step is None and not weights_finite(self.model):
            self._stop(self.state["global_step"], epoch)
        if self.non_finite_step is not None:
            return
        train_logs = {k: float(v) for k, v in (logs or {}).items()}
        val = validate(self.model, self.dataset, self.eval_batch_size, self._predict_fn)
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        record = {"epoch": epoch + 1, "lr": lr, "seconds": time.time() - self._start}
        record.update(train_logs)
        record.update({k: v for k, v in val.items() if not k.startswith("reachability")})
        self.state["history"].append(record)
        logging.info(
            "stage %d epoch %d/%d: loss %.4f acc %s%% | val acc %s%% (many %s / medium %s / "
            "few %s) | lr %.4g | %.1f s",
            self.stage,
            epoch + 1,
            self.epochs,
            train_logs.get("loss", float("nan")),
            _fmt_pct(train_logs.get("accuracy")),
            _fmt_pct(val["val_accuracy"]),
            _fmt_pct(val.get("val_many")),
            _fmt_pct(val.get("val_medium")),
            _fmt_pct(val.get("val_few")),
            lr,
            record["seconds"],
        )
        if self.writer is not None:
            self._write_summaries(record, val)
        if val["val_accuracy"] > self.state["best_val_accuracy"]:
            self.state["best_val_accuracy"] = val["val_accuracy"]
            self.state["best_epoch"] = epoch + 1
            self.save_best()
        self.save_checkpoint(dict(self.state))

    def _write_summaries(self, record, val):
        with self.writer.as_default(step=self.state["global_step"]):
            for key, value in record.items():
                if key != "epoch" and value is not None and math.isfinite(value):
                    tf.summary.scalar(key, value)
            if val["reachability_known"] is not None:
                tf.summary.histogram("reachability/known_val", val["reachability_known"])
            if val["reachability_open"] is not None:
                tf.summary.histogram("reachability/open_val", val["reachability_open"])
        self.writer.flush()
