"""The BiT-HyperRule's learning-rate schedule as a registered Keras serializable.

It lives with the layers, which `import keras_bigtransfer` loads on every backend, so that
`keras.saving.load_model` finds it in a model compiled by `fit_bit` without the caller importing
`keras_bigtransfer.training` (which needs TensorFlow for tf.data). Its rule:
`keras_bigtransfer.training.hyperrule` (Kolesnikov et al., "Big Transfer (BiT)", ECCV 2020).
"""

import math
import numbers

import keras
from keras import ops


def _check_steps(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer of at least 0; got {value!r}.")
    return int(value)


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class HyperRuleSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`HyperRule.learning_rate` as a Keras schedule, computed in the graph: a linear warm-up
    from 0 to `base_lr` over `warmup_steps`, then `base_lr` divided by 10 after each of
    `decay_boundaries` (steps).

    Args:
        base_lr: the peak learning rate, a finite float > 0.
        warmup_steps: int >= 0.
        decay_boundaries: ints >= 0, in steps.

    Raises:
        ValueError: an argument outside those ranges, naming it.
    """

    def __init__(self, base_lr, warmup_steps, decay_boundaries):
        if (isinstance(base_lr, bool) or not isinstance(base_lr, numbers.Real)
                or not math.isfinite(base_lr) or base_lr <= 0):
            raise ValueError(f"base_lr must be a finite number above 0; got {base_lr!r}.")
        self.base_lr = float(base_lr)
        self.warmup_steps = _check_steps("warmup_steps", warmup_steps)
        self.decay_boundaries = tuple(_check_steps("decay boundary", b) for b in decay_boundaries)

    @classmethod
    def from_rule(cls, rule):
        """The schedule of a `keras_bigtransfer.training.HyperRule`."""
        return cls(rule.peak_lr, rule.warmup_steps, rule.decay_boundaries)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = self.base_lr * step / max(self.warmup_steps, 1)
        decays = sum(ops.cast(ops.greater(step, float(b)), "float32") for b in self.decay_boundaries)
        decayed = self.base_lr * ops.power(0.1, decays)
        return ops.where(ops.less(step, float(self.warmup_steps)), warmup, decayed)

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "warmup_steps": self.warmup_steps,
            "decay_boundaries": list(self.decay_boundaries),
        }
