"""SGD with coupled L2 weight decay and per-group learning-rate multipliers."""

import keras
from keras import ops

from keras_oltr.distribute import num_replicas


@keras.saving.register_keras_serializable(package="keras_oltr")
class CoupledSGD(keras.optimizers.SGD):
    """Momentum SGD as the OLTR reference trains: `torch.optim.SGD` with param groups.

    Two things differ from `keras.optimizers.SGD`:

    - Weight decay is coupled (L2): `g <- g + decay * w` before momentum, like
      `torch.optim.SGD(weight_decay=...)`, not Keras' decoupled `w -= lr * wd * w`.
    - Learning rates per group of variables: a variable whose path is a key of
      `lr_multipliers`, or failing that has a path component that is a key (e.g.
      "centroids", "meta_embedding"; the deepest component wins), trains at
      `multiplier * learning_rate`; variables matching none get 1.
      `layer_lr_multipliers(model, {"backbone": 0.1})` expands layer names into
      variable paths (a nested model's variable paths do not name the model). For
      momentum SGD,
      multiplying a variable's (gradient + decay) by k is the same as giving it the
      learning rate k * lr, so this is the reference's per-module learning rate.

    Keras' SGD keeps the learning rate inside the momentum buffer
    (`m = mu * m - lr * g`), PyTorch outside it (`b = mu * b + g; w -= lr * b`): the
    two agree for a constant learning rate and differ for a few steps after each step
    decay.

    Under tf.distribute the gradients are summed over the replicas after `apply`
    scales them, so the decay term is split evenly over the replicas.

    Args:
        learning_rate: float or schedule.
        momentum: momentum (0.9 in OLTR).
        coupled_weight_decay: L2 coefficient added to the gradient (5e-4 in OLTR).
        lr_multipliers: {path component: multiplier >= 0}; every name must match at
            least one variable when the optimizer is built.
        **kwargs: `keras.optimizers.SGD` arguments.
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.0,
        nesterov=False,
        coupled_weight_decay=0.0,
        lr_multipliers=None,
        name="coupled_sgd",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs
        )
        if not coupled_weight_decay >= 0:  # also rejects NaN
            raise ValueError(
                "`coupled_weight_decay` must be >= 0. Received: "
                f"coupled_weight_decay={coupled_weight_decay}"
            )
        self.coupled_weight_decay = float(coupled_weight_decay)
        self.lr_multipliers = {}
        for key, value in dict(lr_multipliers or {}).items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"`lr_multipliers` keys must be names. Received: {key!r}")
            if not float(value) >= 0:
                raise ValueError(f"Learning-rate multipliers must be >= 0. Received: {key}={value}")
            self.lr_multipliers[key] = float(value)
        self._multiplier_list = []
        self._multiplier_by_id = {}
        self._variable_refs = _Refs(())

    def multiplier(self, variable):
        """The learning-rate multiplier of `variable` (1 when no group names it)."""
        if variable.path in self.lr_multipliers:
            return self.lr_multipliers[variable.path]
        best, depth = 1.0, -1
        for index, part in enumerate(variable.path.split("/")):
            if part in self.lr_multipliers and index > depth:
                best, depth = self.lr_multipliers[part], index
        return best

    def build(self, variables):
        if self.built:
            return
        variables = list(variables)
        # Component names must match something (a typo would silently train at 1x);
        # full paths come from `layer_lr_multipliers`, which checked the names.
        matched = {part for v in variables for part in v.path.split("/")}
        unknown = sorted(k for k in self.lr_multipliers if "/" not in k and k not in matched)
        if unknown:
            raise ValueError(
                "`lr_multipliers` names groups that match no variable (a layer or weight "
                f"name on the variables' paths, e.g. 'backbone', 'centroids'). Received: "
                f"{unknown}"
            )
        self._multiplier_list = [self.multiplier(v) for v in variables]
        self._multiplier_by_id = {
            id(v): k for v, k in zip(variables, self._multiplier_list, strict=True)
        }
        self._variable_refs = _Refs(variables)
        super().build(variables)

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        grads = list(grads)
        if trainable_variables is None:
            # Stateless (JAX) path: the gradients come in the order of `build`.
            multipliers = self._multiplier_list
            variables = self._variable_refs.items
        else:
            variables = list(trainable_variables)
            multipliers = [self._multiplier_by_id.get(id(v), 1.0) for v in variables]
        decay = self.coupled_weight_decay / num_replicas() if self.coupled_weight_decay else 0.0
        scaled = []
        for index, (grad, multiplier) in enumerate(zip(grads, multipliers, strict=True)):
            if grad is not None:
                if decay:
                    grad = grad + decay * ops.cast(variables[index], grad.dtype)
                if multiplier != 1.0:
                    grad = grad * multiplier
            scaled.append(grad)
        return super().apply(scaled, trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "coupled_weight_decay": self.coupled_weight_decay,
                "lr_multipliers": dict(self.lr_multipliers),
            }
        )
        return config


class _Refs:
    """Holds the model's variables without the optimizer tracking them as its own."""

    __slots__ = ("items",)

    def __init__(self, items):
        self.items = tuple(items)


def layer_lr_multipliers(model, multipliers):
    """Expands {layer name or "centroids": k} of `model` into {variable path: k}.

    Layers are top-level layers of `model` (e.g. "backbone", a nested model); the
    name "centroids" stands for the centroid weight of a MetaEmbedding's memory.
    Raises ValueError naming the known layers when a name matches nothing.
    """
    layer_names = [layer.name for layer in model.layers]
    expanded = {}
    for name, value in multipliers.items():
        if name == "centroids":
            variables = [v for v in model.variables if v.path.endswith("/centroids")]
            known = bool(variables)
        else:
            known = name in layer_names
            variables = model.get_layer(name).variables if known else []
        if not known:
            raise ValueError(
                "`lr_multipliers` names a layer the model does not have. Known: "
                f"{sorted(layer_names) + ['centroids']}. Received: {name!r}"
            )
        for variable in variables:
            if variable.trainable:  # a frozen layer's variables never reach the optimizer
                expanded[variable.path] = float(value)
    return expanded
