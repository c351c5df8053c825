"""Estimating the effect from an export's vectors: GPI's cross-fitted TarNet and doubly robust scores (issue 24)."""
