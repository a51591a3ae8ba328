"""Active learning: which unlabelled rows to label next."""
