"""fit_bit(recipe="vit"): the ViT paper's fine-tuning recipe (Dosovitskiy et al. 2021, B.1.1), its
schedule, optimizer, resume and CLI flag; and the recipes' settings as one config object (issue 28
item 3, issue 29 item 7)."""

import json
import math
import os

import keras
import numpy as np
import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.training import FitBitConfig, NoisyStudentConfig
from keras_bigtransfer.training.semi_supervised import MetaPseudoLabelsConfig
from tests.toys import Crash, colour_data, tiny_model

ARGS = dict(batch_size=8, base_lr=0.3, total_steps=20, verbose=0)  # 10 epochs of 2 steps


@pytest.mark.parametrize("n,total,warmup", [
    (1_000, 500, 100), (19_999, 500, 100),  # Pets, Flowers (Table 4: 500 steps)
    (20_000, 10_000, 500), (499_999, 10_000, 500),  # CIFAR (10k)
    (1_281_167, 20_000, 500),  # ImageNet (20k)
])
def test_vit_table_at_batch_512(n, total, warmup):
    rule = kb.vit_rule(n, (32, 32))
    assert (rule.total_steps, rule.warmup_steps) == (total, warmup)
    assert (rule.resize_size, rule.crop_size, rule.mixup_alpha) == (448, 384, 0.0)
    assert rule.peak_lr == 0.01 and rule.batch_size == 512


def test_vit_batch_scaling_and_stretching():
    rule = kb.vit_rule(50_000, 224, batch_size=128, base_lr=0.03)
    assert rule.peak_lr == pytest.approx(0.0075)
    assert (rule.total_steps, rule.warmup_steps) == (40_000, 2_000)
    assert rule.with_total_steps(100).warmup_steps == 5
    assert rule.with_total_steps(1).warmup_steps == 0  # the cosine keeps a step to reach 0
    assert rule.with_resolution(96).resize_size == 112  # 448/384 of the crop
    assert rule.with_patch_multiple(14).crop_size == 378
    with pytest.raises(ValueError, match="base_lr"):
        kb.vit_rule(10, 32, base_lr=float("nan"))


def test_vit_schedule_warms_up_then_decays_by_cosine_to_exactly_zero():
    rule = kb.vit_rule(1_000, 32)  # 500 steps, warmup 100, peak 0.01
    lr = rule.learning_rate
    assert lr(0) == 0.0 and lr(50) == pytest.approx(0.005) and lr(100) == pytest.approx(0.01)
    assert lr(300) == pytest.approx(0.005)  # halfway through the cosine
    assert lr(200) == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr(499) > 0 and lr(500) == 0.0
    schedule = rule.schedule()
    steps = np.arange(0, rule.total_steps + 1)
    ours = np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])
    np.testing.assert_allclose(ours, [lr(int(s)) for s in steps], rtol=1e-5, atol=1e-9)
    assert ours[-1] == 0.0 and np.all(ours[:-1][1:] > 0)
    assert np.all(np.diff(ours[100:]) <= 0) and np.all(np.diff(ours[:101]) > 0)


def test_vit_optimizer_and_the_default_recipe_unchanged():
    model = tiny_model()
    history = kb.fit_bit(model, colour_data(32), recipe="vit", batch_size=8, base_lr=0.2, total_steps=4,
                         verbose=0)
    optimizer = model.optimizer
    assert isinstance(history.rule, kb.ViTRule) and history.rule.peak_lr == pytest.approx(0.2 * 8 / 512)
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == 0.9 and not optimizer.nesterov
    assert optimizer.weight_decay is None and optimizer.global_clipnorm == 1.0 and optimizer.clipnorm is None
    schedule = optimizer.get_config()["learning_rate"]
    assert schedule["class_name"] == "CosineDecay" and schedule["config"]["alpha"] == 0.0
    assert schedule["config"]["warmup_target"] == pytest.approx(0.2 * 8 / 512)
    assert schedule["config"]["initial_learning_rate"] == 0.0
    assert int(optimizer.iterations) == 4

    model = tiny_model()
    history = kb.fit_bit(model, colour_data(32), batch_size=8, total_steps=4, verbose=0)
    assert isinstance(history.rule, kb.HyperRule) and history.rule.peak_lr == pytest.approx(0.003 * 8 / 512)
    assert model.optimizer.global_clipnorm is None and model.optimizer.weight_decay is None
    assert model.optimizer.get_config()["learning_rate"]["class_name"] == "HyperRuleSchedule"


def test_settings_build_the_config_and_a_config_may_be_passed():
    first, second = tiny_model(), tiny_model()
    a = kb.fit_bit(first, colour_data(32), recipe="vit", batch_size=8, total_steps=2, verbose=0)
    config = FitBitConfig(recipe="vit", batch_size=8, total_steps=4)
    b = kb.fit_bit(second, colour_data(32), config=config, total_steps=2, verbose=0)  # keywords apply over it
    assert a.rule == b.rule
    for x, y in zip(first.weights, second.weights):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(TypeError, match=r"fit_bit got unexpected setting\(s\) 'bsae_lr'.*base_lr"):
        kb.fit_bit(tiny_model(), colour_data(8), bsae_lr=0.1)
    with pytest.raises(TypeError, match="config must be a FitBitConfig"):
        kb.fit_bit(tiny_model(), colour_data(8), config={"recipe": "vit"})
    with pytest.raises(ValueError, match="recipe must be one of 'bit', 'vit'; got 'deit'"):
        kb.fit_bit(tiny_model(), colour_data(8), recipe="deit")
    with pytest.raises(ValueError, match="base_lr"):
        FitBitConfig(base_lr=-1.0)
    with pytest.raises(TypeError, match="fit_noisy_student got unexpected setting"):
        kb.fit_noisy_student(tiny_model(), tiny_model(), colour_data(8), colour_data(8)[0], step=3)
    with pytest.raises(ValueError, match="confidence_threshold"):
        NoisyStudentConfig(confidence_threshold=1.0)
    with pytest.raises(TypeError, match="steps"):
        MetaPseudoLabelsConfig()  # steps is required, as fit_meta_pseudo_labels' keyword was




@pytest.mark.parametrize("recipe", ["bit", "vit"])
def test_resume_with_each_recipe_equals_an_uninterrupted_run(tmp_path, recipe):
    args = {**ARGS, "recipe": recipe, "total_steps": 8}  # 8 epochs of 1 step
    uninterrupted = tiny_model()
    kb.fit_bit(uninterrupted, colour_data(64), **args)
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        kb.fit_bit(tiny_model(), colour_data(64), checkpoint_dir=ckpt, callbacks=[Crash(5)], **args)
    record = json.load(open(os.path.join(ckpt, "run.json")))
    assert record["recipe"] == recipe and record["settings"]["config"]["recipe"] == recipe
    assert record["settings"]["config"]["total_steps"] == 8 and "peak_lr" in record["settings"]["rule"]
    model = tiny_model(seed=1)
    keras.utils.set_random_seed(0)
    history = kb.fit_bit(model, colour_data(64), checkpoint_dir=ckpt, **args)
    assert int(model.optimizer.iterations) == 8 and len(history.history["loss"]) == 4  # resumed at step 4
    for got, want in zip(model.weights, uninterrupted.weights):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-6)


def test_resuming_with_another_recipe_is_a_clear_error(tmp_path):
    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        kb.fit_bit(tiny_model(), colour_data(64), checkpoint_dir=ckpt, callbacks=[Crash(3)], **ARGS)
    model = tiny_model()
    with pytest.raises(ValueError, match=r"holds a fit_bit run of recipe='bit', not recipe='vit': a run cannot "
                                         r"change recipes\. Rerun with recipe='bit' to resume it"):
        kb.fit_bit(model, colour_data(64), checkpoint_dir=ckpt, recipe="vit", **ARGS)
    assert getattr(model, "optimizer", None) is None  # refused before compiling
    with pytest.raises(ValueError, match=r"other settings: config\.seed=0 there, 1 in this call"):
        kb.fit_bit(model, colour_data(64), checkpoint_dir=ckpt, seed=1, **ARGS)


def test_an_older_run_record_is_refused_clearly(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "run.json").write_text(json.dumps({"format": 1, "trainer": "fit_bit", "settings": {}, "finished": False}))
    with pytest.raises(ValueError, match=r"recorded in format 1 \(an older keras_bigtransfer\).*overwrite=True"):
        kb.fit_bit(tiny_model(), colour_data(64), checkpoint_dir=str(ckpt), **ARGS)


def test_cli_fit_takes_recipe(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from keras_bigtransfer import cli
    from tests.unit.test_cli_errors import _class_folders, run_cli

    calls = []

    def fake_fit_bit(model, data, validation_data=None, **kwargs):
        calls.append(kwargs)
        return SimpleNamespace(rule=kb.vit_rule(10, 32), history={})

    monkeypatch.setattr(kb, "fit_bit", fake_fit_bit)
    tiny_model().save(tmp_path / "m.keras")
    data = _class_folders(tmp_path / "data")
    assert run_cli("fit", tmp_path / "m.keras", data, f"--out={tmp_path / 'run'}", "--recipe=vit") == 0
    assert calls[-1]["recipe"] == "vit" and calls[-1]["base_lr"] is None  # None: the recipe's own rate
    saved = json.loads((tmp_path / "run" / "history.json").read_text())
    assert saved["recipe"] == "vit" and saved["rule"]["crop_size"] == 384
    assert run_cli("fit", tmp_path / "m.keras", data, f"--out={tmp_path / 'run2'}") == 0
    assert calls[-1]["recipe"] == "bit"
    assert run_cli("fit", tmp_path / "m.keras", data, f"--out={tmp_path / 'run3'}", "--recipe=deit") == 2
    assert "--recipe" in capsys.readouterr().err
    assert "recipe" in cli.COMMANDS["fit"][2]


MIRRORED = """
import json, sys
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import keras_bigtransfer as kb
sys.path.insert(0, {root!r})
from tests.toys import tiny_model, colour_data

class Losses(keras.callbacks.Callback):
    def __init__(self):
        super().__init__(); self.losses = []
    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))

results = {{}}
for name, strategy in (("single", None), ("mirrored", tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"]))):
    with strategy.scope() if strategy else tf.device("CPU:0"):
        model = tiny_model(seed=0)
    recorder = Losses()
    kb.fit_bit(model, colour_data(64), recipe="vit", batch_size=16, base_lr=5.0, total_steps=4,
               strategy=strategy, callbacks=[recorder], verbose=0)
    results[name] = recorder.losses
    results[name + "_clipnorm"] = model.optimizer.global_clipnorm
print(json.dumps(results))
"""


def test_vit_recipe_under_mirrored_strategy_matches_single_device(tmp_path):
    """The ViT recipe under tf.distribute trains as on one device where the clip does not bind (this
    model's gradient norms are 0.4-0.7, under 1), and says that Keras clips each replica's gradient
    before the all-reduce (measured: with the clip lowered to 0.05 the mirrored run's losses fell
    1.5% faster than one device's, its replica clips summing to twice the clip)."""
    import subprocess
    import sys

    from tests.toys import ROOT

    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED.format(root=ROOT))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert results["mirrored_clipnorm"] == results["single_clipnorm"] == 1.0
    np.testing.assert_allclose(results["mirrored"], results["single"], rtol=1e-5)
    assert "clips each replica's gradient before" in out.stderr
