"""ViT's feature stages (timm's `forward_intermediates`): each encoder block's output, its patch
tokens as an (h, w, D) map at the model's stride (the class token and registers dropped),
optionally through the final LayerNorm. The R50 hybrid offers its encoder blocks too."""

from keras_bigtransfer.layers import TokenPooling
from keras_bigtransfer.models import registry
from keras_bigtransfer.models.features import Stage, endpoint


def stages(config):
    """Every block's map of a `ViTConfig`'s model, in order."""
    return [Stage(f"Transformer_encoderblock_{i}_mlp_residual", config.hidden_size, config.stride,
                  f"block{i}", f"blocks.{i}") for i in range(config.num_layers)]


def maps(model, selected, is_last, *, feature_norm=False):
    patches = endpoint(model, "embedding")  # (batch, h, w, D), or (batch, D, h, w): gives the grid
    skipped = model.get_layer("pool").num_skipped_tokens
    norm = model.get_layer("Transformer_encoder_norm") if feature_norm else None
    out = []
    for stage in selected:
        tokens = endpoint(model, stage.layer)
        if norm is not None:
            tokens = norm(tokens)
        block = stage.name
        out.append(TokenPooling(None, skipped, data_format=model.data_format,
                                name=f"features_{block}")(tokens, patches))
    return out


FEATURES = registry.Features(stages=stages, maps=maps, default_out_indices=3,  # timm's: the last three blocks
                             reductions=None)
