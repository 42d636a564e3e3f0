"""Which Keras backend writes which export format: one rule for the SavedModel export
(`tfhub/export.py`) and the deployment formats (`deploy/`), checked before any work.

Imports keras only, so both exporters (and the CLI) can ask it without importing each other.
"""

# The Keras backends each format is written from (LiteRT from JAX: jax2tf, then the LiteRT
# converter, deploy/litert.py), and why not from the others.
BACKENDS = {"saved_model": ("tensorflow", "jax"), "litert": ("tensorflow", "jax"),
            "onnx": ("tensorflow", "torch"), "openvino": ("tensorflow", "torch")}
UNSUPPORTED_ROUTES = {
    ("saved_model", "torch"): "Keras' route from PyTorch goes through torch_xla (StableHLO)",
    ("litert", "torch"): "Keras' route from PyTorch needs the litert-torch package",
    ("onnx", "jax"): "Keras' route from JAX needs the jax2onnx package",
    ("openvino", "jax"): "OpenVINO cannot convert the XlaCallModule ops of Keras' JAX export",
}


def check_backend(format):
    """Raise a one-line ValueError, before any work, if `format` is not written from the running
    Keras backend (`BACKENDS`), naming the backends that write it and how to get there."""
    import keras

    backend = keras.backend.backend()
    allowed = BACKENDS[format]
    if backend in allowed:
        return
    why = UNSUPPORTED_ROUTES.get((format, backend), "no route is known")
    raise ValueError(
        f'format="{format}" exports from the {" and ".join(allowed)} Keras backends; this is {backend} '
        f"({why}, which this package does not support). Save the model (model.save(\"m.keras\")) and "
        f"export it in a process with KERAS_BACKEND={' or '.join(allowed)} (models, weights and .keras "
        "files are the same on every backend).")


def check_data_format(model, format):
    """Raise a one-line ValueError, before any work, if `model` (or a model nested in it) was
    built under `keras.config.image_data_format() == "channels_first"`: every export here
    takes NHWC images (the TF Hub image API, and the deployment formats' (height, width, 3)
    inputs and calibration data), so the fix is a channels_last copy of the model."""
    if not any(getattr(layer, "data_format", None) == "channels_first" for layer in _all_layers(model)):
        return
    raise ValueError(
        f'{model.name} was built channels_first (NCHW); format="{format}" exports take channels_last '
        "(NHWC) models. Build it again under keras.config.set_image_data_format(\"channels_last\") "
        "and copy the weights over (export_model.set_weights(model.get_weights()): the weights are "
        "the same in both layouts), then export that.")


def _all_layers(model):
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _all_layers(layer)
