"""EfficientNet-L2 (Noisy Student, Meta Pseudo Labels): the compound-scaling row, its catalogue
entries, and (slow: 480M parameters) the parameter count of timm's tf_efficientnet_l2."""

import pytest

import keras_bigtransfer as kb
from keras_bigtransfer.models import registry
from keras_bigtransfer.models.efficientnet import block_names, round_filters
from keras_bigtransfer.models.efficientnet.convert import tf_layout_variant
from keras_bigtransfer.weights import catalogue


def test_l2_row_and_its_published_checkpoints():
    variant = registry.get_variant("EfficientNetL2")
    config = variant.config
    assert (config.width, config.depth, config.resolution) == (4.3, 5.3, 800)
    assert variant.reference == "timm:tf_efficientnet_l2"
    # efficientnet.md: 88 blocks, stem 136 and head 5504 channels.
    assert len(block_names(config.width, config.depth)) == 88
    assert (round_filters(32, config.width), round_filters(1280, config.width)) == (136, 5504)
    assert variant.default_weights == "efficientnet_l2_ns"
    ns, ns475 = catalogue.get("efficientnet_l2_ns"), catalogue.get("noisy_student_efficientnet-l2_475.tar.gz")
    assert ns.url.endswith("/noisystudent/noisy_student_efficientnet-l2.tar.gz") and ns.resolution == 800
    assert ns475.tag == "efficientnet_l2_ns_475" and ns475.resolution == 475
    assert {e.constructor for e in (ns, ns475)} == {"EfficientNetL2"}
    for handle, resolution in (("hf-hub:timm/tf_efficientnet_l2.ns_jft_in1k", 800),
                               ("hf-hub:timm/tf_efficientnet_l2.ns_jft_in1k_475", 475)):
        assert catalogue.get(handle).constructor == "EfficientNetL2"
        assert catalogue.get(handle).resolution == resolution
    assert tf_layout_variant(["efficientnet-l2/blocks_0/conv2d/kernel"]) == "l2"
    assert "EfficientNetL2" in kb.list_models("efficientnet*")


@pytest.mark.slow
def test_l2_parameter_count_equals_timms():
    import timm

    theirs = sum(p.numel() for p in timm.create_model("tf_efficientnet_l2", pretrained=False).parameters())
    ours = kb.EfficientNetL2(weights=None)
    # timm counts BatchNorm's running statistics as buffers, not parameters; Keras counts them
    # as (non-trainable) weights.
    assert sum(int(w.numpy().size) for w in ours.trainable_weights) == theirs
