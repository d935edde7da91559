"""Stage-2 long-tail methods: each is one registered function over the stage-1 model.

A method receives a `StageContext` (config, dataset, strategy, workdir, how to
train) after stage 1 has trained, writes its stage 2 into the workdir's `stage2/`
folder (best.keras, latest.keras, checkpoint: `StageContext.train` does all three,
also for a method that does not train) and returns the stage's state dict.
`keras_oltr.experiment` picks the method named by `ExperimentConfig.method` and
does everything around it (stage 1, the nearest-neighbour bank, evaluation, export)
the same way for every method. Every method's stage-2 model returns the plain or the
OLTR model's output dict, its change folded into the model as layers or weights.

Registered: "oltr" (Liu et al. 2019), "crt", "lws" (Kang et al. 2020),
"balanced_softmax" (Ren et al. 2020, decoupled), "tau_norm" (Kang et al.),
"logit_adjust" (Menon et al. 2021). A new method is one function::

    @register_method("my_method", stage2=my_schedule)  # my_schedule(config) -> StageConfig
    def my_method(context):
        model = ...  # from context.stage1_model()
        compile_for_stage(model, context.config.stage2, ...)
        return context.train(2, model)
"""

from keras_oltr.methods import decoupled, oltr, post_hoc  # noqa: F401  (register the methods)
from keras_oltr.methods.registry import (
    StageContext,
    configure_method,
    get_method,
    list_methods,
    register_method,
)

__all__ = ["StageContext", "configure_method", "get_method", "list_methods", "register_method"]
