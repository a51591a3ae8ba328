"""The harness's version: recorded in every results file and printed by --version."""

__version__ = "0.1.0"
