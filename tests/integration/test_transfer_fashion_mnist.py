"""Transfer on real data: the real ImageNet-pretrained EfficientNet-Lite0 against random
initialization, fine-tuned with fit_bit on 100 Fashion-MNIST images per class.

Runs examples/fashion_mnist_transfer.py as a user does (the tests import no example)."""

import pytest

from tests.integration.conftest import FASHION_BUDGET, run_fashion_example

XDIST_FIRST = True  # the longest tests of the tier: started first (tests/conftest.py)


@pytest.mark.slow
def test_pretrained_lite0_beats_random_init_on_fashion_mnist(tmp_path):
    report = run_fashion_example(home=tmp_path / "hub_cache")
    assert {k: report[k] for k in ("steps", "base_lr", "batch_size", "seed")} == {
        k: FASHION_BUDGET[k] for k in ("steps", "base_lr", "batch_size", "seed")}
    pretrained = report["heldout_accuracy"]
    scratch = run_fashion_example("--scratch", home=tmp_path / "hub_cache")["heldout_accuracy"]
    # Measured on 2 CPU cores (python examples/fashion_mnist_transfer.py --steps=100 --base_lr=0.1
    # --test_images=500 --seed=S [--scratch]), seed 0 unless named: pretrained 0.618 (Intel Xeon VM),
    # 0.548 (the CI machine), 0.614 and 0.618 (AMD EPYC; seeds 1 and 2 there: 0.598, 0.558); scratch
    # 0.102 and 0.106 (chance is 0.1). The same seed moves by up to 0.07 between CPUs (kernels sum in
    # different orders and 100 BatchNorm steps amplify it), so the bounds sit below the lowest seen.
    assert pretrained >= 0.45
    assert scratch <= 0.20
    assert pretrained - scratch >= 0.30
