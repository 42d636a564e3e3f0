"""Gradients of a layer with each backend's own autodiff, for the per-backend parity tests."""

import keras
import numpy as np


def layer_gradients(layer, x, upstream, variables):
    """d(sum(layer(x) * upstream)) / (x, *variables) as float64 NumPy arrays.

    `variables` are the layer's trainable variables in the order its `stateless_call` takes them;
    the output is cast to float32 before the product, so mixed-precision layers compare alike."""
    backend = keras.backend.backend()
    values = [v.value for v in variables]

    def loss(x, *trainable):
        y, _ = layer.stateless_call(list(trainable), [], x)
        return keras.ops.sum(keras.ops.multiply(keras.ops.cast(y, "float32"), upstream))

    if backend == "jax":
        import jax

        grads = jax.grad(loss, argnums=tuple(range(1 + len(values))))(keras.ops.convert_to_tensor(x), *values)
    elif backend == "torch":
        import torch

        with torch.enable_grad():
            args = [keras.ops.convert_to_tensor(x).requires_grad_(True)]
            args += [v.detach().clone().requires_grad_(True) for v in values]
            grads = [g.detach() for g in torch.autograd.grad(loss(*args), args)]
    else:
        import tensorflow as tf

        args = [tf.constant(x)] + [tf.identity(v) for v in values]
        with tf.GradientTape() as tape:
            tape.watch(args)
            value = loss(*args)
        grads = tape.gradient(value, args)
    return [keras.ops.convert_to_numpy(keras.ops.cast(g, "float32")).astype(np.float64) for g in grads]
