"""Rows of a task's examples from local files and `datasets` sources, with located row errors and input hashes."""
