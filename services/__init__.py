"""The five distill services and what they share (services.common)."""
