"""Noisy Student and Meta Pseudo Labels against supervised-only on real data: Fashion-MNIST,
10 labels per class, 4,000 unlabeled images, EfficientNet-Lite0 (ImageNet weights) at 64 px,
150 steps per phase, 2,000 held-out test images (examples/semi_supervised_fashion_mnist.py)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
import semi_supervised_fashion_mnist  # noqa: E402


@pytest.mark.slow
def test_semi_supervised_methods_against_supervised_only():
    result = semi_supervised_fashion_mnist.run(seed=0)
    # Measured for seed 0 on 2 CPU cores (python examples/semi_supervised_fashion_mnist.py --seeds=0):
    # supervised 0.597, Noisy Student 0.597, Meta Pseudo Labels 0.7185 (0.710 before its fine-tune).
    # MPL beats supervised-only by 0.12; the test asserts half of that, for run-to-run float noise.
    assert result["meta_pseudo_labels"] - result["supervised"] >= 0.06
    # Noisy Student does not beat supervised-only at this scale (docs/noisy_student.md has the
    # numbers for three seeds); the test holds it to what was measured: no collapse either.
    assert result["noisy_student"] - result["supervised"] >= -0.05
    assert result["supervised"] >= 0.5
