"""Hyperparameter search over the config's declared space."""
