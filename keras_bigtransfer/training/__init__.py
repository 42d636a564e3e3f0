"""Training: fit_bit() by the BiT-HyperRule or the ViT recipe, Noisy Student and Meta Pseudo Labels."""

from keras_bigtransfer.extras import require

# Every trainer here feeds tf.data pipelines, on any backend.
require("tensorflow", extra="tensorflow", for_what="fit_bit (and fit_noisy_student, fit_meta_pseudo_labels)")

from keras_bigtransfer.training.fit_bit import FitBitConfig, fit_bit, freeze_batch_norm, zero_head
from keras_bigtransfer.training.hyperrule import HyperRule, HyperRuleSchedule, hyperrule
from keras_bigtransfer.training.semi_supervised import (
    MetaPseudoLabelsConfig,
    NoisyStudentConfig,
    fit_meta_pseudo_labels,
    fit_noisy_student,
)
from keras_bigtransfer.training.vit_rule import ViTRule, vit_rule

__all__ = [
    "FitBitConfig",
    "HyperRule",
    "HyperRuleSchedule",
    "MetaPseudoLabelsConfig",
    "NoisyStudentConfig",
    "ViTRule",
    "fit_bit",
    "fit_meta_pseudo_labels",
    "fit_noisy_student",
    "freeze_batch_norm",
    "hyperrule",
    "vit_rule",
    "zero_head",
]
