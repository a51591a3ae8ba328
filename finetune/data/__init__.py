"""Training data before training: loading, curation, leakage, reweighting, augmentation, privacy steps."""
