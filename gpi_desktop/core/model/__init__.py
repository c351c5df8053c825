"""The model: loading it, the device, the memory estimate, its context window, the tiny test models."""
