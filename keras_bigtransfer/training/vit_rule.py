"""The ViT fine-tuning recipe (Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021,
arXiv 2010.11929, appendix B.1.1 and Table 4; google-research/vision_transformer
`vit_jax/configs/common.py` and `train.py`; google-research/big_vision `configs/transfer.py`):
fine-tuning hyperparameters from the dataset's size, as `hyperrule` gives BiT's.

Each number and its source:

- SGD with momentum 0.9, no weight decay, gradients clipped at global norm 1, batch 512:
  paper B.1.1; big_vision transfer.py (`momentum_hp`, `grad_clip_norm=1.0`, `wd=None`,
  `batch_size=512`); vit_jax train.py (`optax.clip_by_global_norm(1.0)`, `optax.sgd(momentum=0.9)`).
- Linear warmup from 0, then cosine decay to 0 at the last step: vit_jax
  `utils.create_learning_rate_schedule(decay_type='cosine')`, big_vision `decay_type='cosine'`.
- Steps at batch 512: Table 4 (Pets and Flowers 500, CIFAR 10k, ImageNet 20k); the warmup:
  big_vision transfer.py (100 for Pets and Flowers, 500 for CIFAR and ImageNet; vit_jax
  common.py: 500). By dataset size with BiT-HyperRule's limits (20k, 500k examples), which
  put Pets/Flowers, CIFAR and ImageNet where the paper does. (VTAB-1k's 2,500 steps on
  1,000 images are a benchmark's protocol, not a size rule, and are not used.)
- Base learning rate 0.01 at batch 512: big_vision transfer.py (`config.lr = 0.01`), the VTAB
  rate of B.1.1, and in Table 4's grid for every dataset ({0.001, ..., 0.03} and
  {0.003, ..., 0.06}); vit_jax common.py defaults to 0.03. Scaled by batch/512 for other
  batches, step counts by 512/batch, as `hyperrule` does.
- Fine-tuning resolution 384 (paper 3.2 and B.1.1; vit_jax `crop=384`), train images resized
  to 448 then randomly cropped to 384 and flipped (big_vision transfer.py `resize(448)|
  random_crop(384)|flip_lr`); test images resized to 384. No MixUp (`mixup=dict(p=0.0)`).
- The head replaced by a zero-initialized linear layer (B.1.1; big_vision `head_zeroinit`):
  fit_bit zeroes the head for every recipe. Position embeddings follow the resolution (3.2).
"""

import dataclasses
import math
from typing import ClassVar, Optional

import keras

from keras_bigtransfer.training.hyperrule import (
    REFERENCE_BATCH,
    TransferRule,
    check_image_size,
    check_int,
    check_positive,
)

BASE_LR = 0.01
RESIZE_SIZE, CROP_SIZE = 448, 384
MOMENTUM = 0.9
GLOBAL_CLIPNORM = 1.0

# (dataset size below which, (warmup steps, total steps)) at batch 512.
SCHEDULES = (
    (20_000, (100, 500)),  # Pets, Flowers-102
    (500_000, (500, 10_000)),  # CIFAR-10/100
    (None, (500, 20_000)),  # ImageNet
)


@dataclasses.dataclass(frozen=True)
class ViTRule(TransferRule):
    """The ViT recipe's hyperparameters for one dataset at one batch size (see the module).

    `peak_lr` is the rate after warmup at `batch_size` (the base_lr at batch 512 scaled by
    batch_size / 512); step counts are in steps of `batch_size` examples. `mixup_alpha` is
    always 0.0 (the recipe has no MixUp; the input pipeline reads the field).
    """

    resize_size: int
    crop_size: int
    total_steps: int
    warmup_steps: int
    peak_lr: float
    batch_size: int
    mixup_alpha: float = 0.0
    crop_rounded_from: Optional[int] = None  # the crop before for_model() rounded it

    RESIZE_RATIO: ClassVar[float] = RESIZE_SIZE / CROP_SIZE
    MOMENTUM: ClassVar[float] = MOMENTUM
    GLOBAL_CLIPNORM: ClassVar[Optional[float]] = GLOBAL_CLIPNORM

    def learning_rate(self, step):
        """Linear warmup from 0 to `peak_lr` over `warmup_steps`, then cosine decay to exactly
        0 at `total_steps` (and 0 after): vit_jax's `create_learning_rate_schedule`."""
        if step < self.warmup_steps:
            return self.peak_lr * step / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.peak_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    def schedule(self):
        """`learning_rate` as Keras' `CosineDecay` with linear warmup (a built-in serializable)."""
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=self.total_steps - self.warmup_steps, alpha=0.0,
            warmup_target=self.peak_lr, warmup_steps=self.warmup_steps)

    def with_total_steps(self, total_steps):
        """The same rule stretched to `total_steps`, the warmup in proportion (at most
        total_steps - 1, so the cosine has a step to reach 0)."""
        total_steps = check_int("total_steps", total_steps)
        warmup = round(self.warmup_steps * total_steps / self.total_steps)
        return dataclasses.replace(self, total_steps=total_steps,
                                   warmup_steps=max(0, min(warmup, total_steps - 1)))


def vit_rule(num_examples, image_size=None, batch_size=REFERENCE_BATCH, base_lr=BASE_LR):
    """The ViT fine-tuning recipe for a dataset (sources: this module's docstring).

    Args:
        num_examples: training examples (int >= 1): picks the steps, 500 under 20k examples,
            10k under 500k, else 20k (at batch 512).
        image_size: (height, width) or an int, checked but not used: the recipe fine-tunes
            every dataset at 384 (the argument keeps `hyperrule`'s signature).
        batch_size: the batch size used. Other than 512, the learning rate is scaled by
            batch_size / 512 and every step count by 512 / batch_size.
        base_lr: the learning rate at batch 512, a finite float > 0.

    Returns:
        A frozen `ViTRule`.

    Raises:
        ValueError: an argument out of range, naming it.
    """
    num_examples = check_int("num_examples", num_examples)
    check_image_size("image_size", image_size, optional=True)
    batch_size = check_int("batch_size", batch_size)
    base_lr = check_positive("base_lr", base_lr)
    supports = next(s for limit, s in SCHEDULES if limit is None or num_examples < limit)
    scale = REFERENCE_BATCH / batch_size
    warmup, total = (max(1, round(s * scale)) for s in supports)
    return ViTRule(resize_size=RESIZE_SIZE, crop_size=CROP_SIZE, total_steps=total,
                   warmup_steps=min(warmup, total - 1),  # the cosine needs a step to reach 0
                   peak_lr=base_lr * batch_size / REFERENCE_BATCH, batch_size=batch_size)
