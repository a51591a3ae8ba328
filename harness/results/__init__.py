"""results.json: its typed model and schema version, atomic storage, run-vs-baseline comparison, verification of inputs."""
