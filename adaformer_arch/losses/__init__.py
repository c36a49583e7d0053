"""Losses registered in BasicSR's LOSS_REGISTRY."""
from .uncertainty_loss import UncertaintyLoss

__all__ = ['UncertaintyLoss']
