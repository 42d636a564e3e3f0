"""The BiT-HyperRule against the official table (google-research/big_transfer bit_hyperrule.py)."""

import dataclasses

import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.training import HyperRuleSchedule


@pytest.mark.parametrize(
    "n,size,resize,crop,alpha,total,warmup,bounds",
    [
        (1_000, (32, 32), 160, 128, 0.0, 500, 100, (200, 300, 400)),
        (19_999, (95, 96), 160, 128, 0.0, 500, 100, (200, 300, 400)),
        (20_000, (96, 96), 512, 480, 0.1, 10_000, 500, (3_000, 6_000, 9_000)),
        (499_999, 224, 512, 480, 0.1, 10_000, 500, (3_000, 6_000, 9_000)),
        (1_281_167, (224, 224), 512, 480, 0.1, 20_000, 500, (6_000, 12_000, 18_000)),
    ],
)
def test_official_table_at_batch_512(n, size, resize, crop, alpha, total, warmup, bounds):
    rule = kb.hyperrule(n, size)
    assert (rule.resize_size, rule.crop_size, rule.mixup_alpha) == (resize, crop, alpha)
    assert (rule.total_steps, rule.warmup_steps, rule.decay_boundaries) == (total, warmup, bounds)
    assert rule.peak_lr == 0.003 and rule.batch_size == 512


def test_learning_rate_warmup_and_strict_decays():
    rule = kb.hyperrule(1_000, 32)
    lr = rule.learning_rate
    assert lr(0) == 0.0
    assert lr(50) == pytest.approx(0.0015)
    assert lr(100) == lr(200) == pytest.approx(0.003)  # a boundary decays only after it
    assert lr(201) == pytest.approx(0.0003)
    assert lr(301) == pytest.approx(0.00003)
    assert lr(401) == lr(499) == pytest.approx(0.000003)


def test_other_batch_sizes_keep_examples_seen():
    rule = kb.hyperrule(1_000, 32, batch_size=128, base_lr=0.003)
    assert rule.peak_lr == pytest.approx(0.00075)
    assert rule.total_steps == 2_000 and rule.warmup_steps == 400
    assert rule.decay_boundaries == (800, 1_200, 1_600)
    assert rule.total_steps * rule.batch_size == 500 * 512


def test_total_steps_override_scales_in_proportion():
    rule = kb.hyperrule(50_000, 224).with_total_steps(1_000)
    assert (rule.total_steps, rule.warmup_steps, rule.decay_boundaries) == (1_000, 50, (300, 600, 900))


def test_rule_is_frozen_and_validated():
    rule = kb.hyperrule(1_000, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.total_steps = 3
    with pytest.raises(ValueError, match="num_examples"):
        kb.hyperrule(0, 32)
    with pytest.raises(ValueError, match="image_size"):
        kb.hyperrule(10, (32, 32, 3))
    with pytest.raises(ValueError, match="batch_size"):
        kb.hyperrule(10, 32, batch_size=0)


def test_keras_schedule_equals_the_rule():
    rule = kb.hyperrule(1_000, 32, batch_size=64)
    schedule = HyperRuleSchedule.from_rule(rule)
    steps = np.arange(0, rule.total_steps + 5)
    ours = np.array([float(schedule(s)) for s in steps])
    np.testing.assert_allclose(ours, [rule.learning_rate(int(s)) for s in steps], rtol=1e-6, atol=1e-12)
    clone = HyperRuleSchedule.from_config(schedule.get_config())
    assert float(clone(150)) == float(schedule(150))


@pytest.mark.parametrize("base_lr", [float("nan"), float("inf"), -float("inf"), 0.0, -0.003, "0.003", True, None])
def test_base_lr_must_be_finite_and_positive(base_lr):
    with pytest.raises(ValueError, match="base_lr must be a finite number above 0"):
        kb.hyperrule(1_000, 32, base_lr=base_lr)
    with pytest.raises(ValueError, match="base_lr"):
        HyperRuleSchedule(base_lr, 10, (20,))


@pytest.mark.parametrize("kwargs,match", [
    ({"num_examples": 10.5}, "num_examples"), ({"num_examples": True}, "num_examples"),
    ({"image_size": 32.0}, "image_size"), ({"image_size": (32, -1)}, "image_size width"),
    ({"batch_size": 8.0}, "batch_size"), ({"batch_size": np.nan}, "batch_size"),
])
def test_counts_must_be_integers(kwargs, match):
    args = {"num_examples": 1_000, "image_size": 32, **kwargs}
    with pytest.raises(ValueError, match=match):
        kb.hyperrule(**args)
    rule = kb.hyperrule(1_000, 32)
    with pytest.raises(ValueError, match="total_steps"):
        rule.with_total_steps(2.5)
    with pytest.raises(ValueError, match="resolution"):
        rule.with_resolution(np.float32(128))


def test_numpy_integers_are_accepted():
    rule = kb.hyperrule(np.int64(1_000), np.array([32, 32]), batch_size=np.int32(128))
    assert rule == kb.hyperrule(1_000, 32, batch_size=128)
    assert rule.with_total_steps(np.int64(100)).total_steps == 100
    assert rule.with_resolution(np.int64(64)).crop_size == 64


def test_crop_rounded_to_the_patch_multiple_and_said_so():
    small, large = kb.hyperrule(1_000, 32), kb.hyperrule(50_000, 224)
    assert small.with_patch_multiple(14).crop_size == 126 and large.with_patch_multiple(14).crop_size == 476
    assert small.with_patch_multiple(14).resize_size == 160
    assert "crop 480 rounded down to 476" in str(large.with_patch_multiple(14))
    assert small.with_patch_multiple(16) is small and "rounded down" not in str(small)  # 128 is a multiple of 16
    assert small.with_resolution(100).with_patch_multiple(32).crop_size == 96
    assert small.with_patch_multiple(14).with_resolution(140).crop_rounded_from is None


def test_a_model_compiled_by_fit_bit_loads_with_the_package_alone(tmp_path):
    """keras.saving.load_model finds the schedule after `import keras_bigtransfer` alone (the
    training subpackage, which needs TensorFlow, unimported): a fresh process loads the file."""
    import os
    import subprocess
    import sys

    import keras

    from tests.toys import ROOT

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(HyperRuleSchedule(0.1, 5, (10, 20)), momentum=0.9), loss="mse")
    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    code = ("import sys, keras, keras_bigtransfer; m = keras.saving.load_model(sys.argv[1]); "
            "assert 'keras_bigtransfer.training' not in sys.modules; "
            "lr = m.optimizer.get_config()['learning_rate']; "
            "print(lr['class_name'], lr['config']['decay_boundaries'])")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-3:] == ["HyperRuleSchedule", "[10,", "20]"], out.stdout


def test_printout_names_the_batch_scaled_rate_peak_lr():
    # The rate at batch 128 is base_lr / 4; the printout must not call it base_lr.
    text = str(kb.hyperrule(1_000, 32, batch_size=128, base_lr=0.003))
    assert "peak_lr=0.00075" in text and "base_lr" not in text
