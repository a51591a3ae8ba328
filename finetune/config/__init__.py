"""The fine-tune config: schema, search space declaration and the generated reference."""
