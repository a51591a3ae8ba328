"""Task kinds: rows -> per-example records -> model requests -> predictions."""
