"""Model-parallel layouts for the large variants (BiT-R152x4, ViT-L, ViT-H) on JAX.

`keras.distribution.ModelParallel` places each variable by the regular expression
of a `keras.distribution.LayoutMap` that matches its whole path (re.fullmatch). The rules here shard the
widest kernels over a "model" mesh axis (output channels of BiT's stage 3 and 4 convs;
ViT's MLP and attention kernels, Megatron-style: the first MLP kernel and q/k/v by
column / head, the second MLP kernel and the attention output by row); everything else
is replicated. Batches are split over the "batch" axis. Each family declares its rules
(`registry.Family.layout_rules`, next to its builder: `LAYOUT_RULES` in `models/<family>/model.py`).
The rules go by layer name, so they hold for every variant of a family at any width; a
sharded axis must divide by the "model" axis size (BiT channels are multiples of 256, ViT heads 12/16).

Usage (before building the model; JAX is the backend Keras distributes this way):

    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), keras.distribution.list_devices())
    keras.distribution.set_distribution(keras_bigtransfer.distribution.model_parallel("vit", mesh))
    model = keras_bigtransfer.ViT_H14(...)
"""

import keras

from keras_bigtransfer.models import registry

def layout_map(family, device_mesh):
    """The `keras.distribution.LayoutMap` of `family` (a family with `layout_rules`: "bit",
    "vit") on `device_mesh`,
    a `keras.distribution.DeviceMesh` with a "model" axis.

    Raises:
        ValueError: an unknown family, or a mesh without a "model" axis.
    """
    rules = {f.name: f.layout_rules for f in registry.families() if f.layout_rules}
    family = str(family).lower()
    if family not in rules:
        raise ValueError(f"model-parallel layouts exist for {sorted(rules)}; got {family!r}.")
    if "model" not in device_mesh.axis_names:
        raise ValueError(f"the device mesh needs a 'model' axis; its axes are {device_mesh.axis_names}.")
    layouts = keras.distribution.LayoutMap(device_mesh)
    for pattern, axes in rules[family]:
        layouts[pattern] = axes
    return layouts


def model_parallel(family, device_mesh, batch_dim_name="batch"):
    """`keras.distribution.ModelParallel` with `layout_map(family, device_mesh)`, batches
    split over `batch_dim_name`. Pass it to `keras.distribution.set_distribution` before
    building the model."""
    return keras.distribution.ModelParallel(layout_map=layout_map(family, device_mesh),
                                            batch_dim_name=batch_dim_name)
