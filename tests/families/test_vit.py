"""ViT: layers, resolution handling, checkpoint layouts and the model contract."""

import logging

import keras
import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

import keras_bigtransfer as kb
from keras_bigtransfer import layers as kl
from keras_bigtransfer.weights import catalogue
from keras_bigtransfer.models import registry
from keras_bigtransfer.models.vit import model as vit
from tests import reference

# Parameter counts of timm's models with a 1000-class head (built on the meta device); the family
# harness (tests/families/test_harness.py) checks every constructor against timm itself.
TIMM_PARAMS = {
    "ViT_Ti16": ("vit_tiny_patch16_224", 5_717_416),
    "ViT_S16": ("vit_small_patch16_224", 22_050_664),
    "ViT_S32": ("vit_small_patch32_224", 22_878_952),
    "ViT_B8": ("vit_base_patch8_224", 86_576_872),
    "ViT_B16": ("vit_base_patch16_224", 86_567_656),
    "ViT_B32": ("vit_base_patch32_224", 88_224_232),
    "ViT_L16": ("vit_large_patch16_224", 304_326_632),
    "ViT_L32": ("vit_large_patch32_224", 306_535_400),
    "ViT_H14": ("vit_huge_patch14_224", 632_045_800),
    "ViT_R50_B16": ("vit_base_r50_s16_224", 98_659_112),
}


def _small_vit(**kwargs):
    config = dict(patch_size=8, hidden_size=32, mlp_size=64, num_heads=4, num_layers=2,
                  num_classes=10, pretrained_resolution=32)
    config.update(kwargs)
    return vit.VisionTransformer(**config)


# --- layers -----------------------------------------------------------------


@pytest.mark.parametrize("size", [(24, 24), (20, 16), (7, 9), (14, 14)])
def test_bilinear_resize_is_scipy_zoom_order_1(size, rng):
    grid = rng.standard_normal((14, 14, 5)).astype("float32")
    ours = np.asarray(kl.resize_grid(grid, size, "bilinear"))
    theirs = scipy.ndimage.zoom(grid, (size[0] / 14, size[1] / 14, 1), order=1)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("size", [(24, 24), (20, 16), (7, 9), (14, 14)])
def test_bicubic_resize_is_torch_bicubic_antialiased(size, rng):
    grid = rng.standard_normal((14, 14, 5)).astype("float32")
    ours = np.asarray(kl.resize_grid(grid, size, "bicubic"))
    t = torch.from_numpy(grid).permute(2, 0, 1)[None]
    theirs = F.interpolate(t, size=size, mode="bicubic", antialias=True, align_corners=False)
    np.testing.assert_allclose(ours, theirs[0].permute(1, 2, 0).numpy(), atol=1e-5)


def test_position_embedding_keeps_prefix_rows_and_resizes_in_graph(rng):
    layer = kl.PositionEmbedding((4, 4), num_prefix_tokens=1)
    patches = np.zeros((2, 6, 3, 8), "float32")
    prefix = np.zeros((2, 1, 8), "float32")
    cls, tokens = layer(patches, prefix=prefix)
    table = np.asarray(layer.pos_embedding)
    np.testing.assert_allclose(np.asarray(cls)[0], table[0, :1])
    expected = np.asarray(kl.resize_grid(table[0, 1:].reshape(4, 4, 8), (6, 3)))
    np.testing.assert_allclose(np.asarray(tokens)[1], expected.reshape(18, 8), atol=1e-6)
    import tensorflow as tf

    graph = tf.function(lambda p: layer(p), input_signature=[tf.TensorSpec((None, None, None, 8))])
    np.testing.assert_allclose(graph(patches).numpy(), np.asarray(tokens), atol=1e-6)


@pytest.mark.parametrize(
    "layer",
    [
        kl.PatchEmbedding(16, 4),
        kl.PositionEmbedding((3, 5), num_prefix_tokens=0, interpolation="bicubic"),
        kl.LearnedTokens(4, initializer="ones"),
        kl.TokenPooling(None, 5),
        kl.StochasticDepth(0.2),
        kl.GELU(approximate=False),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


def test_stochastic_depth_drops_whole_examples_in_training_only():
    layer = kl.StochasticDepth(0.5, seed=1)
    shortcut, branch = np.zeros((64, 3, 2), "float32"), np.ones((64, 3, 2), "float32")
    np.testing.assert_array_equal(np.asarray(layer([shortcut, branch])), branch)
    out = np.asarray(layer([shortcut, branch], training=True))
    per_example = out.reshape(64, -1)
    assert set(np.unique(per_example)) == {0.0, 2.0}  # dropped, or kept and rescaled
    assert np.all(per_example.min(axis=1) == per_example.max(axis=1))
    with pytest.raises(ValueError, match="rate"):
        kl.StochasticDepth(1.0)


# --- the model contract ------------------------------------------------------


def test_side_not_a_multiple_of_the_patch_is_a_value_error(rng):
    with pytest.raises(ValueError, match="multiples of the patch size 16"):
        kb.ViT_Ti16(weights=None, input_shape=(230, 224, 3))
    model = kb.ViT_Ti16(weights=None)
    with pytest.raises(ValueError, match="multiples of the patch size 16"):
        model(rng.random((1, 224, 200, 3), dtype=np.float32))


def test_any_size_non_square_and_uint8(rng):
    model = _small_vit(num_register_tokens=2)
    floats = rng.random((2, 40, 24, 3), dtype=np.float32)
    assert model(floats).shape == (2, 10)
    as_uint8 = (floats * 255).round().astype("uint8")
    np.testing.assert_allclose(
        np.asarray(model(as_uint8)), np.asarray(model(as_uint8.astype("float32") / 255)), atol=1e-6
    )


@pytest.mark.parametrize("pooling,shape", [(None, (1, 5, 3, 32)), ("token", (1, 32)), ("avg", (1, 32)), ("max", (1, 32))])
def test_feature_outputs_drop_class_and_register_tokens(pooling, shape, rng):
    model = _small_vit(include_top=False, pooling=pooling, num_register_tokens=3)
    assert model(rng.random((1, 40, 24, 3), dtype=np.float32)).shape == shape


def test_keras_round_trip_of_any_size_vit_with_registers(tmp_path, rng):
    model = _small_vit(num_register_tokens=2, stochastic_depth_rate=0.1, dropout_rate=0.1)
    path = tmp_path / "vit.keras"
    model.save(path)
    clone = keras.saving.load_model(path)
    images = rng.random((1, 48, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(clone(images)), np.asarray(model(images)), atol=1e-6)


def test_exported_saved_model_trains_with_the_models_gradients(tmp_path, rng):
    # GELU has a custom gradient (recomputed from its input); the SavedModel must carry it, or
    # a TF Hub user fine-tuning the export gets no gradient at all through the MLP blocks.
    import tensorflow as tf

    from keras_bigtransfer.tfhub import export as publishing

    model = _small_vit()
    head = model.get_layer("head")
    head.kernel.assign(rng.standard_normal(head.kernel.shape).astype("float32"))  # not zero: gradients flow
    loaded = tf.saved_model.load(publishing.export(model, str(tmp_path / "vit"), signature="classification"))
    images = tf.constant(rng.random((2, 32, 32, 3), dtype=np.float32))

    def gradients(fn, variables, names):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(fn(images)))
        return dict(zip(names, tape.gradient(loss, variables)))

    ours = gradients(lambda x: model(x, training=False), model.trainable_variables,
                     [v.path for v in model.trainable_variables])
    exported = gradients(lambda x: loaded(x, training=False), loaded.trainable_variables,
                         [v.name.removesuffix(":0") for v in loaded.trainable_variables])
    assert sorted(exported) == sorted(ours)
    assert any("MlpBlock_3_Dense_0/kernel" in name for name in ours)  # behind GELU's backward
    # float32 sums in another order: relative to the largest gradient (the key bias's is zero in
    # exact arithmetic, so its own scale is round-off)
    scale = max(float(np.abs(gradient).max()) for gradient in ours.values())
    for name, gradient in ours.items():
        assert exported[name] is not None, name
        assert float(np.abs(np.asarray(exported[name]) - np.asarray(gradient)).max()) <= 1e-4 * scale, name


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="pos_embed_interpolation"):
        kb.ViT_Ti16(weights=None, pos_embed_interpolation="nearest")
    with pytest.raises(ValueError, match="num_register_tokens"):
        kb.ViT_Ti16(weights=None, num_register_tokens=-1)
    with pytest.raises(ValueError, match="classifier"):
        _small_vit(classifier="cls")


def test_default_weights_are_catalogue_entries_and_offline_is_clear():
    for name in kb.list_models("ViT_*"):
        if registry.find_variant(name) is None:  # timm's vit_* architecture names
            continue
        entry = catalogue.find(registry.get_variant(name).default_weights)
        assert entry is not None and entry.constructor == name
    with pytest.raises(FileNotFoundError, match="offline|OFFLINE"):
        kb.ViT_Ti16()


def test_catalogue_lists_every_constructor():
    entries = [e for e in catalogue.list_models("vit") if not e.url.startswith("hf-hub:")]  # timm's Hub copies aside
    assert {e.constructor for e in entries} == set(TIMM_PARAMS)
    for e in entries:
        assert e.url.startswith("https://storage.googleapis.com/vit_models/") and e.url.endswith(".npz")
        assert e.resolution in (224, 384) and e.num_classes in (1000, 21843)


def test_wrong_architecture_is_refused_before_download():
    with pytest.raises(ValueError, match="ViT_Ti16"):
        kb.ViT_B16(weights="vit_ti16_augreg_in21k")


# --- checkpoint layouts ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_arrays():
    return reference.timm_vit_to_npz_arrays(
        reference.timm_vit("vit_tiny_patch16_224", act_layer="gelu_tanh")
    )


def _logits(arrays, tmp_path, images, name="ckpt.npz", **kwargs):
    path = reference.write_npz(tmp_path / name, arrays)
    kwargs.setdefault("num_classes", 1000)
    return np.asarray(kb.ViT_Ti16(weights=str(path), **kwargs)(images))


def test_prefixed_and_big_vision_layouts_load_the_same_model(tiny_arrays, tmp_path, rng):
    images = rng.random((1, 64, 64, 3), dtype=np.float32)
    expected = _logits(tiny_arrays, tmp_path, images)
    prefixed = {"opt/target/" + k: v for k, v in tiny_arrays.items()}
    np.testing.assert_allclose(_logits(prefixed, tmp_path, images, "p.npz"), expected, atol=1e-5)

    # big_vision: params/ prefix, block names *_0 / LayerNorm_1, scanned blocks, a top-level
    # pos_embedding over the patches only (the class token carries its own offset instead).
    table = tiny_arrays["Transformer/posembed_input/pos_embedding"]
    big = {"params/cls": tiny_arrays["cls"] + table[:, :1], "params/pos_embedding": table[:, 1:]}
    rename = {"MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
              "LayerNorm_2": "LayerNorm_1", "MlpBlock_3": "MlpBlock_0"}
    scanned = {}
    for key, value in tiny_arrays.items():
        if key.startswith("Transformer/encoderblock_"):
            block, rest = key[len("Transformer/encoderblock_"):].split("/", 1)
            for old, new in rename.items():
                rest = rest.replace(old, new)
            scanned.setdefault(rest, {})[int(block)] = value
        elif key not in ("cls", "Transformer/posembed_input/pos_embedding"):
            big["params/" + key] = value
    for rest, per_block in scanned.items():
        big["params/Transformer/encoderblock/" + rest] = np.stack([per_block[i] for i in sorted(per_block)])
    np.testing.assert_allclose(_logits(big, tmp_path, images, "bv.npz"), expected, atol=1e-5)


def test_pre_logits_dropped_by_default_and_kept_on_request(tiny_arrays, tmp_path, rng):
    arrays = dict(tiny_arrays)
    arrays["pre_logits/kernel"] = rng.standard_normal((192, 192)).astype("float32") * 0.05
    arrays["pre_logits/bias"] = np.zeros(192, "float32")
    images = rng.random((1, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(
        _logits(arrays, tmp_path, images), _logits(tiny_arrays, tmp_path, images, "plain.npz"), atol=1e-5
    )
    path = reference.write_npz(tmp_path / "rep.npz", arrays)
    kept = kb.ViT_Ti16(weights=str(path), num_classes=1000, representation_size=192)
    np.testing.assert_array_equal(np.asarray(kept.get_layer("pre_logits").kernel), arrays["pre_logits/kernel"])


def test_zeroed_21k_head_warns(tiny_arrays, tmp_path, caplog):
    arrays = dict(tiny_arrays)
    arrays["head/kernel"] = np.zeros((192, 21843), "float32")
    arrays["head/bias"] = np.zeros(21843, "float32")
    path = reference.write_npz(tmp_path / "i21k.npz", arrays)
    with caplog.at_level(logging.WARNING):
        kb.ViT_Ti16(weights=str(path), num_classes=21843)
    assert "all zeros" in caplog.text


def test_missing_and_unknown_keys_are_listed(tiny_arrays, tmp_path):
    arrays = dict(tiny_arrays)
    del arrays["Transformer/encoderblock_1/LayerNorm_2/scale"]
    arrays["Transformer/extra/kernel"] = np.zeros(3, "float32")
    path = reference.write_npz(tmp_path / "broken.npz", arrays)
    with pytest.raises(kb.WeightsError) as error:
        kb.ViT_Ti16(weights=str(path), num_classes=1000)
    assert "Transformer_encoderblock_1_LayerNorm_2/gamma" in str(error.value)
    assert "Transformer/extra/kernel" in str(error.value)


def test_registers_keep_their_initialization(tiny_arrays, tmp_path, caplog, rng):
    path = reference.write_npz(tmp_path / "ckpt.npz", tiny_arrays)
    with caplog.at_level(logging.WARNING):
        model = kb.ViT_Ti16(weights=str(path), num_classes=1000, num_register_tokens=4)
    assert "registers/tokens" in caplog.text
    assert model(rng.random((1, 32, 48, 3), dtype=np.float32)).shape == (1, 1000)


def test_gap_classifier_matches_timm_global_average_pool(rng, tmp_path):
    ref = reference.timm_vit(
        "vit_tiny_patch16_224", act_layer="gelu_tanh", class_token=False, global_pool="avg", fc_norm=False,
    )
    path = reference.write_npz(tmp_path / "gap.npz", reference.timm_vit_to_npz_arrays(ref))
    model = vit.VisionTransformer(
        patch_size=16, hidden_size=192, mlp_size=768, num_heads=3, num_layers=12, classifier="gap",
        name="vit_ti16_gap",
    )
    kb.hub.load_weights(model, str(path))
    images = rng.random((1, 224, 224, 3), dtype=np.float32)
    with torch.no_grad():
        theirs = ref(torch.from_numpy((images.transpose(0, 3, 1, 2) - 0.5) / 0.5)).numpy()
    ours = np.asarray(model(images))
    assert np.max(np.abs(ours - theirs)) <= 1e-4 * np.max(np.abs(theirs))


def test_hub_load_builds_the_vit_a_checkpoint_holds(tiny_arrays, tmp_path, rng):
    arrays = dict(tiny_arrays)
    arrays["pre_logits/kernel"] = np.eye(192, dtype="float32")
    arrays["pre_logits/bias"] = np.zeros(192, "float32")
    path = reference.write_npz(tmp_path / "ViT-Ti_16.npz", arrays)
    model = kb.hub.load(str(path))
    assert model.get_layer("pre_logits").units == 192
    assert model.count_params() == TIMM_PARAMS["ViT_Ti16"][1] + 192 * 193
    images = rng.random((1, 32, 48, 3), dtype=np.float32)
    assert model(images).shape == (1, 1000)
