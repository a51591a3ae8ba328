"""Running a suite end to end and publishing its outputs: the public Python API."""
