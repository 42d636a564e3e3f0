"""fit_bit's tf.data pipelines skip AutoGraph (issue 27 item 3): their functions are graph code
already, and converting them (and everything they call) took about 8 of the 9 s of building
the pipelines on 2 loaded CPU cores, on every backend."""

import numpy as np
import tensorflow as tf

from keras_bigtransfer.training import data
from keras_bigtransfer.training.hyperrule import hyperrule


def test_the_pipelines_are_built_without_autograph(capfd):
    source = data.load_source((np.zeros((8, 16, 16, 3), np.uint8), np.arange(8) % 2))
    rule = hyperrule(8, (16, 16), batch_size=4).with_total_steps(2).with_resolution(16)
    tf.autograph.set_verbosity(1, alsologtostdout=True)
    try:
        capfd.readouterr()
        train = data.train_pipeline(source, rule, 2)
        evaluation = data.eval_pipeline(source, rule, 2, 4)
        out = capfd.readouterr().out
    finally:
        tf.autograph.set_verbosity(0, alsologtostdout=False)
    assert "Converted call" not in out, out[:2000]
    images, labels = next(iter(train))
    assert images.shape == (4, 16, 16, 3) and labels.shape == (4, 2)
    images, labels = next(iter(evaluation))
    assert images.shape == (4, 16, 16, 3) and float(tf.reduce_max(images)) == 0.0
