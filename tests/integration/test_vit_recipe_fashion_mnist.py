"""fit_bit's two recipes on real data (issue 28's done-when): a ViT-Ti/16 from random weights,
trained with the BiT-HyperRule and with the ViT recipe on a few hundred Fashion-MNIST images
(Debian's dataset-fashion-mnist), learns with each: its loss falls and its held-out accuracy is
well above chance (0.1). No ViT weights are available offline, so this is learning from scratch
at 32 pixels (2x2 patches), a check that each recipe trains, not a transfer result."""

import numpy as np
import pytest

# Per recipe: base_lr at batch 512. From random weights in STEPS steps the recipes' defaults (0.003,
# 0.01) barely move. BiT's unclipped SGD diverged at 0.3 (loss back to 2.7, accuracy 0.19); the ViT
# recipe's clipping takes 1.0. Measured on 2 shared CPU cores, seed 0 (about 4 minutes each there):
# bit 0.1: loss 2.30 -> 1.82 (last three epochs' mean 1.79), held-out accuracy 0.250;
# vit 1.0: loss 2.30 -> 1.43 (mean 1.37), accuracy 0.403 (60 steps at 0.5: 0.457).
# Seeds 1 and 2 (training draw, initialization and fit_bit's seed; quiet machine, 80 s for the four):
# bit accuracy 0.253 / 0.327, last-three loss mean 1.90 / 1.68; vit 0.457 / 0.407, 1.38 / 1.23.
# A seed moves accuracy by up to 0.1 between CPUs: the bounds sit 0.1 below the lowest seen
# (bit 0.25, vit 0.40), and the smallest loss drop seen is 0.40 against the 0.3 asked.
BASE_LR = {"bit": 0.1, "vit": 1.0}
MIN_ACCURACY = {"bit": 0.15, "vit": 0.25}  # chance: 0.1
STEPS, BATCH, PER_CLASS, TEST_PER_CLASS = 40, 32, 30, 30


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    from keras_bigtransfer.datasets import fashion_mnist, per_class_subset

    with pytest.MonkeyPatch.context() as patch:  # the files are copied into a Keras cache of the test's own
        patch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
        (x_train, y_train), (x_test, y_test) = fashion_mnist()
    return (per_class_subset(x_train, y_train, PER_CLASS, seed=0),
            per_class_subset(x_test, y_test, TEST_PER_CLASS, seed=100))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["bit", "vit"])
def test_a_vit_learns_fashion_mnist_with_each_recipe(fashion, recipe):
    import keras

    import keras_bigtransfer as kb
    from keras_bigtransfer.training import data as data_lib

    train, test = fashion
    keras.utils.set_random_seed(0)
    model = kb.ViT_Ti16(weights=None, num_classes=10, classifier_activation=None)
    history = kb.fit_bit(model, train, recipe=recipe, resolution=32, batch_size=BATCH, base_lr=BASE_LR[recipe],
                         total_steps=STEPS, seed=0, verbose=0)
    loss = history.history["loss"]
    source = data_lib.load_source(test, what="validation_data")
    correct = total = 0
    for x, y in data_lib.eval_pipeline(source, history.rule, 10, 100):
        logits = keras.ops.convert_to_numpy(model(x, training=False))
        correct += int(np.sum(np.argmax(logits, 1) == np.argmax(y, 1)))
        total += int(y.shape[0])
    accuracy = correct / total
    assert np.all(np.isfinite(loss)) and np.mean(loss[-3:]) < loss[0] - 0.3, loss
    assert accuracy >= MIN_ACCURACY[recipe], accuracy
