"""Multi-head self-attention with a faster score computation on TensorFlow."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_bigtransfer")
class MultiHeadDotProductAttention(keras.layers.MultiHeadAttention):
    """`keras.layers.MultiHeadAttention` (same weights, config and results within float32
    rounding) whose unmasked, dropout-free attention on TensorFlow runs as two batched matmuls.

    Keras' TensorFlow `ops.dot_product_attention` computes `einsum("BTNH,BSNH->BNTS")` and
    `einsum("BNTS,BSNH->BTNH")`, which TensorFlow lowers to transposes of both operands
    around each batched matmul, then scales the (B, N, T, S) logits. Here the query is
    scaled (T x H instead of T x S values), the heads are moved forward once, and the
    logits are `matmul(q, k^T)`: ViT-B/16 inference at 224 px, batch 16, ran faster against
    timm in a paired run (docs/benchmarks.md). Other backends, masks, attention dropout
    while training and `return_attention_scores` take Keras' own path (JAX and PyTorch have
    fused kernels behind `ops.dot_product_attention`).

    Inputs and outputs are those of `keras.layers.MultiHeadAttention`: query (batch, T, dim),
    value (batch, S, dim) -> (batch, T, dim), in the layer's compute dtype; the softmax runs in
    float32 under a mixed-precision policy, as Keras' does.
    """

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False, **kwargs):
        if (keras.backend.backend() != "tensorflow" or attention_mask is not None or use_causal_mask
                or return_attention_scores or kwargs or len(query.shape) != 4
                or (self.dropout > 0.0 and training is not False)):
            return super()._compute_attention(
                query, key, value, attention_mask=attention_mask, training=training,
                return_attention_scores=return_attention_scores, use_causal_mask=use_causal_mask, **kwargs)
        dtype = query.dtype
        scale = ops.cast(1.0 / float(self.key_dim) ** 0.5, dtype)
        query = ops.transpose(ops.multiply(query, scale), (0, 2, 1, 3))  # (B, N, T, H)
        key = ops.transpose(key, (0, 2, 3, 1))  # (B, N, H, S)
        value = ops.transpose(value, (0, 2, 1, 3))  # (B, N, S, H)
        logits = ops.matmul(query, key)
        if keras.backend.standardize_dtype(logits.dtype) != "float32":  # softmax in float32, as Keras' attention
            probs = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), dtype)
        else:
            probs = ops.softmax(logits, axis=-1)
        return ops.transpose(ops.matmul(probs, value), (0, 2, 1, 3)), None
