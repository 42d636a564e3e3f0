"""Model-parallel layouts for the large variants (BiT-R152x4, ViT-L, ViT-H) on JAX.

`keras.distribution.ModelParallel` places each variable by the regular expression
of a `keras.distribution.LayoutMap` that matches its whole path (re.fullmatch). The rules here shard the
widest kernels over a "model" mesh axis (output channels of BiT's stage 3 and 4 convs;
ViT's MLP and attention kernels, Megatron-style: the first MLP kernel and q/k/v by
column / head, the second MLP kernel and the attention output by row); everything else
is replicated. Batches are split over the "batch" axis. The rules go by layer name, so
they hold for every variant of a family at any width; a sharded axis must divide by the
"model" axis size (BiT channels are multiples of 256, ViT heads 12/16).

Usage (before building the model; JAX is the backend Keras distributes this way):

    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), keras.distribution.list_devices())
    keras.distribution.set_distribution(keras_bigtransfer.distribution.model_parallel("vit", mesh))
    model = keras_bigtransfer.ViT_H14(...)
"""

import keras

RULES = {
    "bit": (
        # (kh, kw, in, out) kernels of the two widest stages: split the output channels.
        (r".*block[34]_unit\d+_\w+_standardized_conv2d/kernel", (None, None, None, "model")),
    ),
    "vit": (
        (r".*MlpBlock_\d+_Dense_0/kernel", (None, "model")),
        (r".*MlpBlock_\d+_Dense_0/bias", ("model",)),
        (r".*MlpBlock_\d+_Dense_1/kernel", ("model", None)),
        (r".*MultiHeadDotProductAttention_\d+/(query|key|value)/kernel", (None, "model", None)),
        (r".*MultiHeadDotProductAttention_\d+/(query|key|value)/bias", ("model", None)),
        (r".*MultiHeadDotProductAttention_\d+/attention_output/kernel", ("model", None, None)),
    ),
}


def layout_map(family, device_mesh):
    """The `keras.distribution.LayoutMap` of `family` ("bit" or "vit") on `device_mesh`,
    a `keras.distribution.DeviceMesh` with a "model" axis.

    Raises:
        ValueError: an unknown family, or a mesh without a "model" axis.
    """
    family = str(family).lower()
    if family not in RULES:
        raise ValueError(f"model-parallel layouts exist for {sorted(RULES)}; got {family!r}.")
    if "model" not in device_mesh.axis_names:
        raise ValueError(f"the device mesh needs a 'model' axis; its axes are {device_mesh.axis_names}.")
    layouts = keras.distribution.LayoutMap(device_mesh)
    for pattern, axes in RULES[family]:
        layouts[pattern] = axes
    return layouts


def model_parallel(family, device_mesh, batch_dim_name="batch"):
    """`keras.distribution.ModelParallel` with `layout_map(family, device_mesh)`, batches
    split over `batch_dim_name`. Pass it to `keras.distribution.set_distribution` before
    building the model."""
    return keras.distribution.ModelParallel(layout_map=layout_map(family, device_mesh),
                                            batch_dim_name=batch_dim_name)
