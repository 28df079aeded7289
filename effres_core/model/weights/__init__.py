"""Bundled weights: ``default/`` holds the default model."""
