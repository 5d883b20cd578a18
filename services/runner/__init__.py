"""The model runner: one BentoML service per model."""
