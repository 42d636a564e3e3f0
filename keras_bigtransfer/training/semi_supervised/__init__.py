"""Semi-supervised recipes on the fit_bit pipeline: Noisy Student and Meta Pseudo Labels."""

from keras_bigtransfer.training.semi_supervised.meta_pseudo_labels import MetaPseudoLabelsConfig, fit_meta_pseudo_labels
from keras_bigtransfer.training.semi_supervised.noisy_student import NoisyStudentConfig, fit_noisy_student

__all__ = ["MetaPseudoLabelsConfig", "NoisyStudentConfig", "fit_meta_pseudo_labels", "fit_noisy_student"]
