"""One LoRA training run: encoding, the Trainer, validation accuracy, diagnosis, the manifest."""
