"""The BiT-HyperRule (Kolesnikov et al. 2020, section 3.3; google-research/big_transfer
`bit_hyperrule.py`): fine-tuning hyperparameters from the dataset's size and resolution."""

import dataclasses
import math
import numbers
from typing import ClassVar, Optional

import keras

# The schedule is a registered serializable kept with the layers (loaded with the package, so
# keras.saving.load_model finds it); imported here for `training.HyperRuleSchedule`.
from keras_bigtransfer.layers.schedules import HyperRuleSchedule

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


def check_int(name, value, minimum=1, optional=False):
    """`value` as an int, or a ValueError naming `name`: an integer (Python or NumPy,
    not bool) of at least `minimum`; None passes when `optional`."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer of at least {minimum}; got {value!r}.")
    return int(value)


def check_positive(name, value, optional=False):
    """`value` as a float, or a ValueError naming `name`: a finite real number above 0
    (a NaN or infinite learning rate trains a model full of NaNs without a word)."""
    if value is None and optional:
        return None
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a finite number above 0; got {value!r}.")
    return float(value)


def check_image_size(name, value, optional=False):
    """(height, width) from an int or a pair of ints >= 1, or a ValueError naming `name`."""
    if value is None and optional:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2:
        raise ValueError(f"{name} must be (height, width) or an int; got {value!r}.")
    return tuple(check_int(f"{name} {side}", v) for side, v in zip(("height", "width"), pair))


def patch_multiple(*models):
    """The multiple of which the models' image sides must be: the patch size of their
    ViT patch embeddings (1 for models without one, which take any size)."""
    from keras_bigtransfer.layers.patch_embedding import PatchEmbedding

    multiple, pending = 1, list(models)
    while pending:
        layer = pending.pop()
        if isinstance(layer, PatchEmbedding):
            multiple = math.lcm(multiple, int(layer.patch_size))
        pending.extend(getattr(layer, "layers", ()))
    return multiple


class TransferRule:
    """What every recipe's rule (`HyperRule`, `ViTRule`) shares: its crop, set or rounded for
    the model, and its optimizer. A rule has the fields resize_size, crop_size, mixup_alpha,
    total_steps, warmup_steps, peak_lr, batch_size and crop_rounded_from, which the input
    pipeline reads, and a `schedule()`: its learning rate as a Keras schedule.
    `RESIZE_RATIO`: the resize before the random crop, relative to the crop."""

    RESIZE_RATIO: ClassVar[float] = 1.25
    MOMENTUM: ClassVar[float] = 0.9
    GLOBAL_CLIPNORM: ClassVar[Optional[float]] = None

    def __str__(self):
        text = repr(self)
        if self.crop_rounded_from is not None:
            text += (f" (crop {self.crop_rounded_from} rounded down to {self.crop_size}, "
                     f"a multiple of the model's patch size)")
        return text

    def with_resolution(self, crop_size):
        """The same rule training at `crop_size`, resized to RESIZE_RATIO times it first
        (1.25 for the HyperRule, as 160 -> 128)."""
        crop_size = check_int("resolution", crop_size, minimum=8)
        return dataclasses.replace(self, resize_size=int(round(crop_size * self.RESIZE_RATIO)),
                                   crop_size=crop_size, crop_rounded_from=None)

    def with_patch_multiple(self, multiple):
        """The same rule with its crop rounded down to a multiple of `multiple` (a ViT's
        patch size: 128 -> 126 and 480 -> 476 for patch 14); the resize stays."""
        multiple = check_int("multiple", multiple)
        crop = max(multiple, self.crop_size // multiple * multiple)
        if crop == self.crop_size:
            return self
        return dataclasses.replace(self, crop_size=crop,
                                   crop_rounded_from=self.crop_rounded_from or self.crop_size)

    def for_model(self, *models):
        """The same rule with a crop every one of `models` can take (see `with_patch_multiple`)."""
        return self.with_patch_multiple(patch_multiple(*models))

    def optimizer(self):
        """The rule's optimizer: SGD with momentum MOMENTUM on `schedule()`, no weight decay,
        gradients clipped to global norm GLOBAL_CLIPNORM (None: not clipped)."""
        return keras.optimizers.SGD(learning_rate=self.schedule(), momentum=self.MOMENTUM,
                                    global_clipnorm=self.GLOBAL_CLIPNORM)


@dataclasses.dataclass(frozen=True)
class HyperRule(TransferRule):
    """Fine-tuning hyperparameters for one dataset at one batch size.

    `peak_lr` is the learning rate after warmup at `batch_size`: the `base_lr` given to
    `hyperrule` (the rate at batch 512) scaled by batch_size / 512. Step counts are in
    steps of `batch_size` examples.
    `mixup_alpha` 0.0 means no MixUp.
    """

    resize_size: int
    crop_size: int
    mixup_alpha: float
    total_steps: int
    warmup_steps: int
    decay_boundaries: tuple
    peak_lr: float
    batch_size: int
    crop_rounded_from: Optional[int] = None  # the crop before for_model() rounded it

    def learning_rate(self, step):
        """Linear warmup from 0, then divided by 10 after each decay boundary."""
        if step < self.warmup_steps:
            return self.peak_lr * step / self.warmup_steps
        decays = sum(1 for boundary in self.decay_boundaries if boundary < step)
        return self.peak_lr / 10**decays

    def schedule(self):
        """`learning_rate` as a Keras schedule (`HyperRuleSchedule`)."""
        return HyperRuleSchedule.from_rule(self)

    def with_total_steps(self, total_steps):
        """The same rule stretched to `total_steps`: warmup and boundaries scale in proportion."""
        total_steps = check_int("total_steps", total_steps)
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
        A frozen `HyperRule`; its `peak_lr` is `base_lr` scaled to `batch_size`.
    """
    num_examples = check_int("num_examples", num_examples)
    image_size = check_image_size("image_size", image_size)
    batch_size = check_int("batch_size", batch_size)
    base_lr = check_positive("base_lr", base_lr)

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
        peak_lr=base_lr * batch_size / REFERENCE_BATCH,
        batch_size=batch_size,
    )
