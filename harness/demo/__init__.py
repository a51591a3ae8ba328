"""The embedded demo: bundled data, a tiny base model, fine-tunes and reports."""
