"""The generator service: calls the teacher N times per prompt and streams the candidates."""
