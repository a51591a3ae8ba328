"""The suite: its schema, cross-field checks, YAML positions and the generated reference."""
