"""What every distill server shares: bootstrap, settings, errors, artifact store, model registry."""
