"""Models registered in BasicSR's MODEL_REGISTRY."""
