"""The scoring API and what stands behind it: loading, fingerprints, scoring and generation kernels, the response cache, process groups."""
