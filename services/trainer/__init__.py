"""The trainer service: fine-tunes a LoRA adapter with the BOND loss."""
