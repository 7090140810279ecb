"""Chest X-ray classification: training pipeline and shared image handling."""

__version__ = "0.1.0"
