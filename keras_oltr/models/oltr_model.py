"""The model class shared by both OLTR stages: Keras' own fit with OLTR's loss."""

import keras
from keras import ops

from keras_oltr.colour_jitter import apply_deferred
from keras_oltr.distribute import num_replicas, reducible_logs, replica_sum
from keras_oltr.losses.class_prior_ce import cross_entropy, log_class_prior
from keras_oltr.losses.large_margin import large_margin_loss


@keras.saving.register_keras_serializable(package="keras_oltr")
class OLTRModel(keras.Model):
    """A functional model returning a dict with at least "logits", trained with OLTR's loss.

    Training is Keras' stock `fit` / `train_step` on every backend (TensorFlow, JAX,
    PyTorch); `train_step` only applies a deferred flip + colour jitter to the batch
    before calling Keras' own, and `compute_loss` and `compute_metrics` are OLTR's:

        loss = CE(logits, y) + lambda * L_LM(direct_feature, centroids)

    The large-margin term is active when the model has a `MetaEmbedding` layer named
    "meta_embedding" (the stage-2 model); the stage-1 plain model trains with the
    cross-entropy alone. Optionally the CE is class-prior aware (Balanced Softmax /
    logit adjustment, `tau` > 0). The centroids move by the large-margin loss's
    gradient alone, whose attract part is the reference's centre-loss step (see
    `keras_oltr.losses.large_margin_loss`); the optimizer gives them momentum, decay
    and their learning rate. The reference's optimiser semantics (coupled L2 decay,
    per-module learning rates) are an optimizer feature:
    `keras_oltr.optimizers.CoupledSGD`.

    All reductions divide by the global batch, so under tf.distribute the per-replica
    losses and gradients sum over the replicas to the single-device values for the
    same global batch (Keras sums the replicas' gradients).

    The ImageNet-family flip and colour jitter can run here too, on the accelerator,
    when the input pipeline defers them (`train_step`).

    Logged: "loss", "ce", "large_margin" (stage 2, unweighted global value) and
    "accuracy" (of the logits).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    def train_step(self, *args):
        """Keras' own train step, after a flip and colour jitter the input pipeline deferred.

        A batch `({"images", "jitter"}, labels)` (from `train_dataset(...,
        defer_jitter=True)`) gets `keras_oltr.colour_jitter.flip_and_jitter` inside
        the compiled step, on the accelerator; any other batch goes through as is.
        """
        *state, data = args  # (data) on TensorFlow and PyTorch, (state, data) on JAX
        if isinstance(data, (tuple, list)) and data:
            data = (apply_deferred(data[0]), *data[1:])
        return super().train_step(*state, data)

    def compile(
        self,
        optimizer="sgd",
        *,
        large_margin_weight=0.01,
        margin=10.0,
        repel_weight=0.01,
        class_counts=None,
        tau=0.0,
        **kwargs,
    ):
        """Configures training.

        Args:
            optimizer: a Keras optimizer; OLTR uses `CoupledSGD` (momentum 0.9,
                coupled weight decay 5e-4, per-module learning-rate multipliers).
            large_margin_weight: lambda of the large-margin loss (0.01, reference).
            margin, repel_weight: of the large-margin loss (10, 0.01).
            class_counts: train images per class; needed when tau > 0.
            tau: 0 for plain CE, 1 for Balanced Softmax, other values for logit
                adjustment.
            **kwargs: passed to keras.Model.compile (e.g. steps_per_execution,
                jit_compile). On TensorFlow `jit_compile` defaults to False (XLA is
                slower than plain TF on CPU); other backends keep Keras' default.
        """
        if not tau >= 0:
            raise ValueError(f"`tau` must be >= 0. Received: tau={tau}")
        if tau > 0 and class_counts is None:
            raise ValueError("`class_counts` are needed for tau > 0. Received: class_counts=None")
        if not large_margin_weight >= 0:
            raise ValueError(
                f"`large_margin_weight` must be >= 0. Received: large_margin_weight="
                f"{large_margin_weight}"
            )
        for unsupported in ("loss", "metrics", "weight_decay", "lr_multipliers"):
            if unsupported in kwargs:
                raise ValueError(
                    f"OLTRModel.compile does not take `{unsupported}`: the loss and metrics "
                    "are OLTR's, and weight decay / learning-rate multipliers belong to the "
                    "optimizer (keras_oltr.optimizers.CoupledSGD)."
                )
        self.large_margin_weight = float(large_margin_weight)
        self.margin = float(margin)
        self.repel_weight = float(repel_weight)
        self.tau = float(tau)
        self._log_prior = None if tau == 0 else log_class_prior(class_counts)
        self._uses_large_margin = self.centroid_memory is not None and self.large_margin_weight > 0
        self.ce_tracker = keras.metrics.Mean(name="ce")
        self.lm_tracker = keras.metrics.Mean(name="large_margin")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        if keras.backend.backend() == "tensorflow":
            kwargs.setdefault("jit_compile", False)
        super().compile(optimizer=optimizer, **kwargs)
        if self.built:
            # Build the optimizer now, so a checkpoint with optimizer state can load
            # before the first step.
            self.optimizer.build(self.trainable_variables)

    @property
    def centroid_memory(self):
        """The CentroidMemory of the stage-2 model, or None for the plain model."""
        try:
            return self.get_layer("meta_embedding").memory
        except ValueError:
            return None

    def get_compile_config(self):
        # compile() takes OLTR-specific arguments that Keras cannot restore; a reloaded
        # model is compiled again by whoever trains it.
        return None

    def oltr_losses(self, outputs, labels):
        """(per-replica loss, per-replica CE share, global unweighted L_LM or None)."""
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        batch = replica_sum(ops.cast(ops.shape(labels)[0], "float32"))
        ce = ops.sum(cross_entropy(labels, outputs["logits"], self._log_prior, self.tau)) / batch
        if not self._uses_large_margin:
            return ce, ce, None
        lm, parts = large_margin_loss(
            outputs["direct_feature"],
            labels,
            self.centroid_memory.centroids,
            weight=self.large_margin_weight,
            margin=self.margin,
            repel_weight=self.repel_weight,
        )
        return ce + lm, ce, parts["attract"] + self.repel_weight * parts["repel"]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is None:
            raise ValueError("OLTRModel trains on (images, labels) batches. Received: y=None")
        if sample_weight is not None:
            raise ValueError("OLTRModel does not support sample weights.")
        loss, ce, lm_global = self.oltr_losses(y_pred, y)
        self.ce_tracker.update_state(ce * num_replicas())
        if lm_global is not None:
            self.lm_tracker.update_state(lm_global)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = ops.cast(ops.reshape(y, (-1,)), "int32")
        self.accuracy_tracker.update_state(labels, y_pred["logits"])
        return reducible_logs({m.name: m.result() for m in self.metrics if self._logged(m)})

    def _logged(self, metric):
        return metric is not self.lm_tracker or self._uses_large_margin
