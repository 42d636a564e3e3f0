"""Training: the BiT-HyperRule and fit_bit()."""

from keras_bigtransfer.training.fit_bit import fit_bit, zero_head
from keras_bigtransfer.training.hyperrule import HyperRule, HyperRuleSchedule, hyperrule

__all__ = ["HyperRule", "HyperRuleSchedule", "fit_bit", "hyperrule", "zero_head"]
