"""Downstream evaluation of a trained encoder (kNN, linear probe, fine-tuning) on Ray."""
