"""The model class shared by both OLTR stages, with its custom train_step."""

import keras
import tensorflow as tf
from keras import ops

from keras_oltr.layers.centroid_memory import num_replicas, replica_sum
from keras_oltr.losses.class_prior_ce import cross_entropy, log_class_prior
from keras_oltr.losses.large_margin import large_margin_loss


@keras.saving.register_keras_serializable(package="keras_oltr")
class OLTRModel(keras.Model):
    """A functional model returning a dict with at least "logits", trained with OLTR's loss.

    The loss is CE(logits, y) + lambda * L_LM(direct_feature, centroids) (SPEC 3).
    The large-margin term and the centroid update (SPEC 4) are active when the model
    has a `MetaEmbedding` layer named "meta_embedding" (the stage-2 model); the
    stage-1 plain model trains with the cross-entropy alone. Optionally the CE is
    class-prior aware (Balanced Softmax / logit adjustment, `tau` > 0).

    Optimisation follows the reference's PyTorch SGD: L2 weight decay enters the
    gradient (coupled, like `torch.optim.SGD(weight_decay=...)`), and per-module
    learning rates are multipliers of the optimizer's learning rate, given per
    top-level layer name (e.g. {"backbone": 0.1, "centroids": 0.1}); multiplying the
    (gradient + decay) of a group by k is the same as giving that group lr k * lr with
    plain momentum SGD. The centroids are non-trainable weights; their step (centre
    loss direction + repel gradient + decay) goes through the same optimizer, so they
    get momentum and the schedule like the reference's centroid optimizer.

    All reductions divide by the global batch, so under tf.distribute the gradients
    summed over the replicas are the single-device gradients for the same global
    batch.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

    def compile(
        self,
        optimizer="sgd",
        *,
        large_margin_weight=0.01,
        margin=10.0,
        repel_weight=0.01,
        weight_decay=5e-4,
        lr_multipliers=None,
        class_counts=None,
        tau=0.0,
        **kwargs,
    ):
        """Configures training.

        Args:
            optimizer: a Keras optimizer (SGD with momentum 0.9 in OLTR).
            large_margin_weight: lambda of the large-margin loss (0.01, reference).
            margin, repel_weight: of the large-margin loss (10, 0.01).
            weight_decay: coupled L2 weight decay applied to every updated variable.
            lr_multipliers: {top-level layer name or "centroids": multiplier}; layers
                not named get 1.
            class_counts: train images per class; needed when tau > 0.
            tau: 0 for plain CE, 1 for Balanced Softmax, other values for logit
                adjustment.
            **kwargs: passed to keras.Model.compile (e.g. steps_per_execution).
        """
        if tau < 0:
            raise ValueError(f"`tau` must be >= 0. Received: tau={tau}")
        if tau > 0 and class_counts is None:
            raise ValueError("`class_counts` are needed for tau > 0. Received: class_counts=None")
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay}")
        if large_margin_weight < 0:
            raise ValueError(
                f"`large_margin_weight` must be >= 0. Received: large_margin_weight="
                f"{large_margin_weight}"
            )
        self.large_margin_weight = float(large_margin_weight)
        self.margin = float(margin)
        self.repel_weight = float(repel_weight)
        self.weight_decay = float(weight_decay)
        self.lr_multipliers = dict(lr_multipliers or {})
        self._variable_multipliers = self._resolve_multipliers(self.lr_multipliers)
        self.tau = float(tau)
        self._log_prior = None if tau == 0 else log_class_prior(class_counts)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ce_tracker = keras.metrics.Mean(name="ce")
        self.lm_tracker = keras.metrics.Mean(name="large_margin")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        kwargs.setdefault("jit_compile", False)  # XLA is slower than plain on CPU here
        super().compile(optimizer=optimizer, **kwargs)
        # Build the optimizer on everything train_step updates, centroids included.
        # Otherwise, under tf.distribute, fit() builds it on trainable_variables alone
        # before the first step and the centroid update fails with "Unknown variable".
        if self.built and not self.optimizer.built:
            self.optimizer.build(self._updated_variables())

    @property
    def centroid_memory(self):
        """The CentroidMemory of the stage-2 model, or None for the plain model."""
        try:
            return self.get_layer("meta_embedding").memory
        except ValueError:
            return None

    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.ce_tracker, self.accuracy_tracker]
        if self.centroid_memory is not None:
            trackers.insert(2, self.lm_tracker)
        return trackers

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.15, TF backend) pulls a first batch and strategy.reduce()s it before
        # fit() to build the model symbolically; MultiWorkerMirroredStrategy cannot
        # reduce a structured batch ("Attempt to convert a value (PerReplica...)").
        # An OLTRModel is built at construction and compile() builds its optimizer,
        # so there is nothing left to build.
        if self.built and self.optimizer is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def get_compile_config(self):
        # compile() takes OLTR-specific arguments that Keras cannot restore; a reloaded
        # model is compiled again by whoever trains it.
        return None

    def _resolve_multipliers(self, multipliers):
        """Maps id(variable) -> learning-rate multiplier, checking the names exist."""
        resolved = {}
        layer_names = {layer.name for layer in self.layers}
        for name, value in multipliers.items():
            if value < 0:
                raise ValueError(
                    f"Learning-rate multipliers must be >= 0. Received: {name}={value}"
                )
            if name == "centroids":
                memory = self.centroid_memory
                variables = [memory.centroids] if memory is not None else []
            elif name in layer_names:
                variables = self.get_layer(name).variables
            else:
                raise ValueError(
                    f"`lr_multipliers` names a layer the model does not have. Known: "
                    f"{sorted(layer_names) + ['centroids']}. Received: {name!r}"
                )
            for variable in variables:
                resolved[id(variable)] = float(value)
        return resolved

    def _updated_variables(self):
        """The variables the optimizer updates: the trainable ones and the centroids."""
        variables = list(self.trainable_variables)
        memory = self.centroid_memory
        if memory is not None:
            variables.append(memory.centroids)
        return variables

    def _multiplier(self, variable):
        return self._variable_multipliers.get(id(variable), 1.0)

    def _oltr_losses(self, outputs, labels):
        """Per-replica (share of the) CE and large-margin losses, and their global values."""
        batch = replica_sum(ops.cast(ops.shape(labels)[0], "float32"))
        ce = ops.sum(cross_entropy(labels, outputs["logits"], self._log_prior, self.tau)) / batch
        memory = self.centroid_memory
        if memory is None or self.large_margin_weight == 0:
            return ce, ce, None
        lm, parts = large_margin_loss(
            outputs["direct_feature"],
            labels,
            memory.centroids,
            margin=self.margin,
            repel_weight=self.repel_weight,
        )
        lm_global = parts["attract"] + self.repel_weight * parts["repel"]
        return ce + self.large_margin_weight * lm, ce, lm_global

    def train_step(self, data):
        images, labels = data[0], ops.cast(ops.reshape(data[1], (-1,)), "int32")
        replicas = num_replicas()
        memory = self.centroid_memory
        variables = self._updated_variables()
        with tf.GradientTape() as tape:
            if memory is not None:
                tape.watch(memory.centroids.value)
            outputs = self(images, training=True)
            loss, ce, lm_global = self._oltr_losses(outputs, labels)
            decay = 0.0
            if self.weight_decay > 0:
                # Coupled L2 decay, split over the replicas (their gradients are summed).
                squares = [ops.sum(ops.square(ops.cast(v, "float32"))) for v in variables]
                decay = 0.5 * self.weight_decay * ops.sum(ops.stack(squares)) / replicas
            scaled = self.optimizer.scale_loss(loss + decay)
        grads = tape.gradient(scaled, variables)
        grads = [
            None if g is None else g * self._multiplier(v)
            for g, v in zip(grads, variables, strict=True)
        ]
        self.optimizer.apply(grads, variables)
        self.loss_tracker.update_state(loss * replicas)
        self.ce_tracker.update_state(ce * replicas)
        if lm_global is not None:
            self.lm_tracker.update_state(lm_global)
        self.accuracy_tracker.update_state(labels, outputs["logits"])
        return self._logs()

    def test_step(self, data):
        images, labels = data[0], ops.cast(ops.reshape(data[1], (-1,)), "int32")
        replicas = num_replicas()
        outputs = self(images, training=False)
        loss, ce, lm_global = self._oltr_losses(outputs, labels)
        self.loss_tracker.update_state(loss * replicas)
        self.ce_tracker.update_state(ce * replicas)
        if lm_global is not None:
            self.lm_tracker.update_state(lm_global)
        self.accuracy_tracker.update_state(labels, outputs["logits"])
        return self._logs()

    def _logs(self):
        logs = {m.name: m.result() for m in self.metrics}
        if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
            # Keras 3.15 reduces per-replica logs with strategy.reduce(MEAN, axis=0)
            # under multi-worker collectives, which rejects scalars; shape [1] reduces
            # to the same scalar.
            logs = {k: ops.reshape(v, (1,)) for k, v in logs.items()}
        return logs

    def predict_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        return self(images, training=False)
