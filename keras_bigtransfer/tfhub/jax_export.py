"""The TF Hub reusable SavedModel from the JAX backend, through Keras' own export (jax2tf).

`keras.export.ExportArchive` converts the model's calls with jax2tf and holds the
weights as tf.Variables; here its two converted calls (training False and True) become
the reusable SavedModel's `__call__(images, training=False)`, with `variables` in the
order the TensorFlow export writes them (the model's weights, then other state), so
`hub.load` reads both the same way.

Sizes: jax2tf traces with symbolic image sides. A side of unknown size is declared a
multiple of the model's total stride (`input_multiple`: 32 for BiT and EfficientNet, the
patch grid's stride for a ViT), which makes every intermediate size exact: with free
sides, jax2tf cannot prove a ViT's position grid or a residual branch's size equal
(InconclusiveDimensionOperation, incompatible shapes). So from JAX an any-size model
serves sides that are multiples of that stride; a model built with a fixed input_shape
exports at exactly that size.
"""

import keras

PROBE_SIDE = 512  # a side every family's stride divides


def input_multiple(model):
    """The total stride of `model`'s image maps: the probe side over the smallest map side
    (32 for BiT and EfficientNet, 16 for ViT-B/16 and the R50 hybrid)."""
    maps = [layer.output for layer in model.layers
            if layer is not model and len(getattr(getattr(layer, "output", None), "shape", ())) == 4
            and not isinstance(layer, keras.layers.InputLayer)]
    if not maps:
        return 1
    probe = keras.Model(model.inputs, maps)
    specs = probe.compute_output_spec(keras.KerasTensor((1, PROBE_SIDE, PROBE_SIDE, 3)))
    specs = specs if isinstance(specs, (list, tuple)) else [specs]
    smallest = min(min(s.shape[1], s.shape[2]) for s in specs)
    return max(1, PROBE_SIDE // max(1, smallest))


def polymorphic_shape(model):
    """jax2tf's shape of the image input: "(batch, 32*h, 32*w, 3)" for any size, the
    static sides where the model has them."""
    shape = tuple(model.inputs[0].shape)
    multiple = input_multiple(model) if None in shape[1:3] else 1
    sides = [str(s) if s is not None else f"{multiple}*{name}" for s, name in zip(shape[1:3], "hw")]
    return f"(batch, {sides[0]}, {sides[1]}, {shape[3]})", multiple


def reusable_module(model, output_name):
    """The reusable SavedModel root of `model` converted by jax2tf: an instance of
    a `tf.train.Checkpoint` with `variables`, `trainable_variables`,
    `regularization_losses`, `__call__` traced for training False and True, and
    `serving_default` returning {output_name: outputs}, and `input_multiple`.

    Raises:
        ValueError: jax2tf cannot convert the model at symbolic sizes; the message says
            to build it with a fixed input_shape (or to export under TensorFlow).
    """
    import tensorflow as tf

    poly, multiple = polymorphic_shape(model)
    signature = [keras.InputSpec(shape=(None,) + tuple(model.inputs[0].shape[1:]), dtype="float32")]
    archive = keras.export.ExportArchive()
    archive.track(model)
    options = {"jax2tf_kwargs": {"polymorphic_shapes": [poly]}}
    try:
        infer = archive.add_endpoint("call_inference", lambda images: model(images, training=False),
                                     input_signature=signature, **options)
        train = archive.add_endpoint("call_training", lambda images: model(images, training=True),
                                     input_signature=signature, **options)
    except Exception as e:  # jax2tf's shape errors have no common public base
        raise ValueError(
            f"{model.name} does not convert from JAX to a SavedModel at input shape {poly} "
            f"({type(e).__name__}: {str(e)[:300]}). Build the model with a fixed "
            "input_shape=(height, width, 3) and export that, or export under KERAS_BACKEND=tensorflow."
        ) from e
    backend_variables = list(model.trainable_variables) + list(model.non_trainable_variables)
    tf_variables = {id(v): t for v, t in zip(backend_variables, archive.variables)}
    weight_ids = {id(v) for v in model.weights}
    ordered = list(model.weights) + [v for v in model.variables if id(v) not in weight_ids]

    @tf.function
    def call(images, training=False):
        return train(images) if training else infer(images)

    root = tf.train.Checkpoint()
    root.variables = [tf_variables[id(v)] for v in ordered]
    root.trainable_variables = [tf_variables[id(v)] for v in model.trainable_variables]
    root.regularization_losses = []
    spec = tf.TensorSpec(signature[0].shape, tf.float32, name="images")
    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    root.__call__ = call
    root.serving_default = tf.function(lambda images: {output_name: call(images, training=False)},
                                       input_signature=[spec])
    root.input_multiple = multiple
    return root
