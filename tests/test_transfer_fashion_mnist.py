"""Transfer on real data: the real ImageNet-pretrained EfficientNet-Lite0 against random
initialization, fine-tuned with fit_bit on 100 Fashion-MNIST images per class."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import fashion_mnist_transfer  # noqa: E402

# The budget: 100 steps at batch 32 (3,200 images seen, 3.2 passes), base_lr 0.1 at batch 512
# (0.00625 at batch 32), crop 128 (the HyperRule for 28x28 images), 500 held-out test images, seed 0.
BUDGET = dict(steps=100, base_lr=0.1, batch_size=32, per_class=100, test_images=500, seed=0)


@pytest.mark.slow
def test_pretrained_lite0_beats_random_init_on_fashion_mnist():
    pretrained, _ = fashion_mnist_transfer.run("EfficientNetLite0", scratch=False, **BUDGET)
    scratch, _ = fashion_mnist_transfer.run("EfficientNetLite0", scratch=True, **BUDGET)
    # Measured on 2 CPU cores (python examples/fashion_mnist_transfer.py --steps=100 --base_lr=0.1
    # --test_images=500 [--scratch]): pretrained 0.618, scratch 0.102 (chance is 0.1).
    assert pretrained >= 0.55
    assert scratch <= 0.20
    assert pretrained - scratch >= 0.35
