"""Export: a trained adapter merged into its base as a plain checkpoint (``finetune merge``)."""
