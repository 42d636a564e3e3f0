"""The BiT-HyperRule (Kolesnikov et al. 2020, section 3.3; google-research/big_transfer
`bit_hyperrule.py`): fine-tuning hyperparameters from the dataset's size and resolution."""

import dataclasses

import keras
from keras import ops

REFERENCE_BATCH = 512
SMALL_IMAGE_AREA = 96 * 96
MIXUP_MIN_EXAMPLES = 20_000
MIXUP_ALPHA = 0.1

# (warmup end, three decay boundaries, total steps) at batch 512, by dataset size.
SCHEDULES = (
    (20_000, (100, 200, 300, 400, 500)),
    (500_000, (500, 3_000, 6_000, 9_000, 10_000)),
    (None, (500, 6_000, 12_000, 18_000, 20_000)),
)


@dataclasses.dataclass(frozen=True)
class HyperRule:
    """Fine-tuning hyperparameters for one dataset at one batch size.

    `base_lr` is the peak learning rate at `batch_size` (already scaled by
    batch_size / 512); step counts are in steps of `batch_size` examples.
    `mixup_alpha` 0.0 means no MixUp.
    """

    resize_size: int
    crop_size: int
    mixup_alpha: float
    total_steps: int
    warmup_steps: int
    decay_boundaries: tuple
    base_lr: float
    batch_size: int

    def learning_rate(self, step):
        """Linear warmup from 0, then divided by 10 after each decay boundary."""
        if step < self.warmup_steps:
            return self.base_lr * step / self.warmup_steps
        decays = sum(1 for boundary in self.decay_boundaries if boundary < step)
        return self.base_lr / 10**decays

    def with_resolution(self, crop_size):
        """The same rule training at `crop_size` (resized to 1.25x first, as 160 -> 128)."""
        if not isinstance(crop_size, int) or crop_size < 8:
            raise ValueError(f"resolution must be an integer of at least 8 pixels; got {crop_size!r}.")
        return dataclasses.replace(self, resize_size=int(round(crop_size * 1.25)), crop_size=crop_size)

    def with_total_steps(self, total_steps):
        """The same rule stretched to `total_steps`: warmup and boundaries scale in proportion."""
        if total_steps < 1:
            raise ValueError(f"total_steps must be a positive integer; got {total_steps!r}.")
        scale = total_steps / self.total_steps
        return dataclasses.replace(
            self,
            total_steps=int(total_steps),
            warmup_steps=max(0, round(self.warmup_steps * scale)),
            decay_boundaries=tuple(round(b * scale) for b in self.decay_boundaries),
        )


def hyperrule(num_examples, image_size, batch_size=512, base_lr=0.003):
    """The BiT-HyperRule for a dataset.

    Args:
        num_examples: training examples.
        image_size: (height, width) of the images, or one int for square images.
        batch_size: the batch size used. Other than 512, the learning rate is scaled by
            batch_size / 512 and every step count by 512 / batch_size, so training sees
            the same number of examples.
        base_lr: the learning rate at batch 512.

    Returns:
        A frozen `HyperRule`.
    """
    if not isinstance(num_examples, int) or num_examples < 1:
        raise ValueError(f"num_examples must be a positive integer; got {num_examples!r}.")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size must be (height, width) or an int; got {image_size!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
    if base_lr <= 0:
        raise ValueError(f"base_lr must be positive; got {base_lr!r}.")

    small = image_size[0] * image_size[1] < SMALL_IMAGE_AREA
    resize_size, crop_size = (160, 128) if small else (512, 480)
    mixup_alpha = MIXUP_ALPHA if num_examples >= MIXUP_MIN_EXAMPLES else 0.0
    supports = next(s for limit, s in SCHEDULES if limit is None or num_examples < limit)
    scale = REFERENCE_BATCH / batch_size
    warmup, *boundaries, total = (max(1, round(s * scale)) for s in supports)
    return HyperRule(
        resize_size=resize_size,
        crop_size=crop_size,
        mixup_alpha=mixup_alpha,
        total_steps=total,
        warmup_steps=warmup,
        decay_boundaries=tuple(boundaries),
        base_lr=base_lr * batch_size / REFERENCE_BATCH,
        batch_size=batch_size,
    )


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class HyperRuleSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`HyperRule.learning_rate` as a Keras schedule, computed in the graph."""

    def __init__(self, base_lr, warmup_steps, decay_boundaries):
        self.base_lr = float(base_lr)
        self.warmup_steps = int(warmup_steps)
        self.decay_boundaries = tuple(int(b) for b in decay_boundaries)

    @classmethod
    def from_rule(cls, rule):
        return cls(rule.base_lr, rule.warmup_steps, rule.decay_boundaries)

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
