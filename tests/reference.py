"""Independent reference implementations and checkpoint writers for the tests.

Checkpoints are written in the exact published formats (key names, shapes,
layouts) from models built by other libraries, so the loaders are tested on
files they did not produce.
"""

import h5py
import numpy as np


def timm_bit(name="resnetv2_50x1_bit", num_classes=1000, seed=0):
    """A timm BiT model with random, non-zero weights everywhere (GN affine and head too)."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.startswith("head"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1 and pname.endswith("weight"):  # GroupNorm gamma
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1:  # GroupNorm beta
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return model


def randomize_affine_and_head(model, seed, scale=0.05):
    """Give a Keras model's norm affine parameters and head random non-zero values, so that
    a parity check cannot pass on zeros (a BiT head starts at zero; GN starts at 1/0)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.path.startswith("head/") or v.path.endswith("beta"):
            v.assign((scale * rng.standard_normal(v.shape)).astype("float32"))
        elif v.path.endswith("gamma"):
            v.assign((1 + 0.2 * rng.standard_normal(v.shape)).astype("float32"))
    return model


def timm_bit_to_npz_arrays(model, prefix="resnet/"):
    """timm ResNetV2 state -> the published BiT .npz scheme (HWIO kernels, 1x1-conv head)."""
    sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}

    def hwio(w):
        return np.ascontiguousarray(w.transpose(2, 3, 1, 0))

    out = {
        f"{prefix}root_block/standardized_conv2d/kernel": hwio(sd["stem.conv.weight"]),
        f"{prefix}group_norm/gamma": sd["norm.weight"],
        f"{prefix}group_norm/beta": sd["norm.bias"],
        f"{prefix}head/conv2d/kernel": hwio(sd["head.fc.weight"]),
        f"{prefix}head/conv2d/bias": sd["head.fc.bias"],
    }
    for i, stage in enumerate(model.stages):
        for j, _ in enumerate(stage.blocks):
            src = f"stages.{i}.blocks.{j}."
            dst = f"{prefix}block{i + 1}/unit{j + 1:02d}/"
            for conv, letter in (("conv1", "a"), ("conv2", "b"), ("conv3", "c")):
                out[f"{dst}{letter}/standardized_conv2d/kernel"] = hwio(sd[src + conv + ".weight"])
            for norm, letter in (("norm1", "a"), ("norm2", "b"), ("norm3", "c")):
                out[f"{dst}{letter}/group_norm/gamma"] = sd[src + norm + ".weight"]
                out[f"{dst}{letter}/group_norm/beta"] = sd[src + norm + ".bias"]
            if src + "downsample.conv.weight" in sd:
                out[f"{dst}a/proj/standardized_conv2d/kernel"] = hwio(sd[src + "downsample.conv.weight"])
    return out


def write_npz(path, arrays):
    np.savez(path, **arrays)
    return path


def write_bit_tf2_h5(path, npz_arrays, prefix="resnet/"):
    """Write BiT weights the way Keras 2 `save_weights` lays out the official TF2 model.

    One group per top-level layer (root_block, block1..4, group_norm, head) with
    `layer_names` / `weight_names` attributes; datasets named by variable name
    with the `:0` suffix; the head is `head/dense` with a 2-D kernel.
    """
    groups = {}
    for key, array in npz_arrays.items():
        name = key[len(prefix):]
        if name.startswith("head/conv2d/"):
            name = name.replace("head/conv2d/", "head/dense/")
            if array.ndim == 4:
                array = array.reshape(array.shape[-2:])
        top = name.split("/")[0]
        groups.setdefault(top, []).append((name + ":0", array))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [g.encode() for g in groups]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.3.0-tf"
        for top, weights in groups.items():
            g = f.create_group(top)
            g.attrs["weight_names"] = [n.encode() for n, _ in weights]
            for n, a in weights:
                g.create_dataset(n, data=a)
    return path


def tf_hub_bit_module(npz_arrays, prefix="resnet/"):
    """A SavedModel-able tf.Module in the published TF Hub BiT layout.

    Variables carry the checkpoint's names (`resnet/block1/unit01/a/group_norm/gamma`),
    and `__call__` is an independent BiT forward pass in raw TensorFlow ops
    (not Keras), taking [0, 1] images and returning the head's logits.
    """
    import tensorflow as tf

    class BiTModule(tf.train.Checkpoint):  # the reusable SavedModel recipe
        def __init__(self):
            super().__init__()
            self.variables_by_key = {
                key: tf.Variable(value, name=key, trainable=True) for key, value in npz_arrays.items()
            }
            self.variables = list(self.variables_by_key.values())
            self.trainable_variables = list(self.variables)
            self.regularization_losses = []

        def _w(self, key):
            return self.variables_by_key[prefix + key]

        def _conv(self, x, key, stride=1):
            w = self._w(key + "/standardized_conv2d/kernel")
            mean, var = tf.nn.moments(w, axes=[0, 1, 2], keepdims=True)
            w = (w - mean) / tf.sqrt(var + 1e-10)
            return tf.nn.conv2d(x, w, stride, "VALID")

        def _gn_relu(self, x, scope, groups=32):
            b, h, w, c = tf.unstack(tf.shape(x))
            g = tf.reshape(x, [b, h, w, groups, c // groups])
            mean, var = tf.nn.moments(g, axes=[1, 2, 4], keepdims=True)
            g = (g - mean) / tf.sqrt(var + 1e-5)
            scope = scope + "/" if scope else ""
            x = tf.reshape(g, [b, h, w, c]) * self._w(scope + "group_norm/gamma") + self._w(scope + "group_norm/beta")
            return tf.nn.relu(x)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            x = images * 2.0 - 1.0
            x = self._conv(tf.pad(x, [[0, 0], [3, 3], [3, 3], [0, 0]]), "root_block", 2)
            x = tf.nn.max_pool2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, "VALID")
            block = 1
            while f"{prefix}block{block}/unit01/a/standardized_conv2d/kernel" in npz_arrays:
                unit = 1
                while f"{prefix}block{block}/unit{unit:02d}/a/standardized_conv2d/kernel" in npz_arrays:
                    name = f"block{block}/unit{unit:02d}"
                    stride = 2 if (unit == 1 and block > 1) else 1
                    pre = self._gn_relu(x, name + "/a")
                    shortcut = self._conv(pre, name + "/a/proj", stride) if unit == 1 else x
                    y = self._conv(pre, name + "/a")
                    y = self._gn_relu(y, name + "/b")
                    y = self._conv(tf.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]]), name + "/b", stride)
                    y = self._conv(self._gn_relu(y, name + "/c"), name + "/c")
                    x = shortcut + y
                    unit += 1
                block += 1
            x = tf.reduce_mean(self._gn_relu(x, ""), axis=[1, 2])
            kernel = self._w("head/conv2d/kernel")
            return tf.matmul(x, tf.reshape(kernel, tf.shape(kernel)[-2:])) + self._w("head/conv2d/bias")

    return BiTModule()


def timm_vit(name="vit_tiny_patch16_224", seed=0, **kwargs):
    """A timm ViT (or hybrid) with random, non-zero weights everywhere (norms, biases, head)."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in pname) and pname.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif pname.startswith("head") or p.ndim == 1 or "token" in pname:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def timm_vit_to_npz_arrays(model, prefix=""):
    """timm VisionTransformer state -> the published vision_transformer .npz scheme."""
    sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    dim = model.embed_dim
    heads = model.blocks[0].attn.num_heads
    head_dim = dim // heads

    def hwio(w):
        return np.ascontiguousarray(w.transpose(2, 3, 1, 0))

    out = {
        "embedding/kernel": hwio(sd["patch_embed.proj.weight"]),
        "embedding/bias": sd["patch_embed.proj.bias"],
        "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "head/kernel": np.ascontiguousarray(sd["head.weight"].T),
        "head/bias": sd["head.bias"],
    }
    if "cls_token" in sd:
        out["cls"] = sd["cls_token"]
    for i in range(len(model.blocks)):
        src, dst = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        mha = dst + "MultiHeadDotProductAttention_1/"
        qkv_w = sd[src + "attn.qkv.weight"].reshape(3, dim, dim)
        qkv_b = sd[src + "attn.qkv.bias"].reshape(3, heads, head_dim)
        for j, part in enumerate(("query", "key", "value")):
            out[f"{mha}{part}/kernel"] = np.ascontiguousarray(qkv_w[j].T.reshape(dim, heads, head_dim))
            out[f"{mha}{part}/bias"] = qkv_b[j]
        out[mha + "out/kernel"] = np.ascontiguousarray(sd[src + "attn.proj.weight"].T.reshape(heads, head_dim, dim))
        out[mha + "out/bias"] = sd[src + "attn.proj.bias"]
        for norm, name in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
            out[f"{dst}{name}/scale"] = sd[f"{src}{norm}.weight"]
            out[f"{dst}{name}/bias"] = sd[f"{src}{norm}.bias"]
        for fc, name in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
            out[f"{dst}MlpBlock_3/{name}/kernel"] = np.ascontiguousarray(sd[f"{src}mlp.{fc}.weight"].T)
            out[f"{dst}MlpBlock_3/{name}/bias"] = sd[f"{src}mlp.{fc}.bias"]
    backbone = getattr(model.patch_embed, "backbone", None)
    if backbone is not None:  # hybrid: vit_jax ResNet names, top level
        stem = "patch_embed.backbone.stem."
        out["conv_root/kernel"] = hwio(sd[stem + "conv.weight"])
        out["gn_root/scale"], out["gn_root/bias"] = sd[stem + "norm.weight"], sd[stem + "norm.bias"]
        for i, stage in enumerate(backbone.stages):
            for j, block in enumerate(stage.blocks):
                src = f"patch_embed.backbone.stages.{i}.blocks.{j}."
                dst = f"block{i + 1}/unit{j + 1}/"
                for r in (1, 2, 3):
                    out[f"{dst}conv{r}/kernel"] = hwio(sd[f"{src}conv{r}.weight"])
                    out[f"{dst}gn{r}/scale"] = sd[f"{src}norm{r}.weight"]
                    out[f"{dst}gn{r}/bias"] = sd[f"{src}norm{r}.bias"]
                if block.downsample is not None:
                    out[f"{dst}conv_proj/kernel"] = hwio(sd[f"{src}downsample.conv.weight"])
                    out[f"{dst}gn_proj/scale"] = sd[f"{src}downsample.norm.weight"]
                    out[f"{dst}gn_proj/bias"] = sd[f"{src}downsample.norm.bias"]
    return {prefix + k: v for k, v in out.items()}


def official_posembed_zoom(table, new_grid, num_prefix_tokens=1):
    """vision_transformer's `interpolate_posembed`: scipy.ndimage.zoom(order=1) of the grid."""
    import scipy.ndimage

    prefix, grid = table[:, :num_prefix_tokens], table[0, num_prefix_tokens:]
    old = int(np.sqrt(len(grid)))
    grid = grid.reshape(old, old, -1)
    zoom = (new_grid[0] / old, new_grid[1] / old, 1)
    grid = scipy.ndimage.zoom(grid, zoom, order=1).reshape(1, new_grid[0] * new_grid[1], -1)
    return np.concatenate([prefix, grid], axis=1)


def timm_logits(model, images):
    """A timm model's logits for NHWC images in [0, 1] (its weights expect [-1, 1], NCHW)."""
    import torch

    x = torch.from_numpy((images.transpose(0, 3, 1, 2) - 0.5) / 0.5)
    with torch.no_grad():
        return model(x).numpy()


def max_rel_diff(ours, theirs):
    """max |ours - theirs| / max |theirs|: the logits tolerance every parity test states."""
    return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))


def randomize_batchnorm(model, seed):
    """Give a timm model's BatchNorm layers non-trivial affine parameters and statistics
    (timm initializes them to 1/0 and 0/1, which would hide a swapped or missing tensor)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(c, generator=gen))
                module.bias.copy_(0.2 * torch.randn(c, generator=gen))
                module.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
                module.running_var.copy_(1 + 0.5 * torch.rand(c, generator=gen))
    return model
