"""Transfer on real data: the real ImageNet-pretrained EfficientNet-Lite0 against random
initialization, fine-tuned with fit_bit on 100 Fashion-MNIST images per class."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import fashion_mnist_transfer  # noqa: E402

# The budget: 60 steps at batch 16 (960 images seen), base_lr 1.0 at batch 512
# (0.03125 at batch 16), 500 held-out test images, seed 0.
BUDGET = dict(steps=60, base_lr=1.0, batch_size=16, per_class=100, test_images=500, seed=0)


@pytest.mark.slow
def test_pretrained_lite0_beats_random_init_on_fashion_mnist():
    pretrained, _ = fashion_mnist_transfer.run("EfficientNetLite0", scratch=False, **BUDGET)
    scratch, _ = fashion_mnist_transfer.run("EfficientNetLite0", scratch=True, **BUDGET)
    # Measured (make test, 2 CPU cores): pretrained PRETRAINED_MEASURED, scratch SCRATCH_MEASURED.
    assert pretrained >= PRETRAINED_FLOOR
    assert scratch <= SCRATCH_CEILING
    assert pretrained - scratch >= MARGIN
