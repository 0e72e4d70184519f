"""tierswitch: adaptive tier-switching middleware for ML inference."""

__version__ = "0.1.0"
