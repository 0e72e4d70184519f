"""Complexity estimators: features of an input and a score in [0, 1]."""

from tierswitch.estimator.base import Estimator, uncertainty_of
from tierswitch.estimator.complexity import ComplexityEstimator
from tierswitch.estimator.features import detect_modality, extract_features
from tierswitch.estimator.learned import LearnedEstimator

__all__ = [
    "ComplexityEstimator",
    "Estimator",
    "LearnedEstimator",
    "detect_modality",
    "extract_features",
    "uncertainty_of",
]
