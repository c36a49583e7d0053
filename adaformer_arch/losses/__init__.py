"""Losses registered in BasicSR's LOSS_REGISTRY."""
