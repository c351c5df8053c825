"""GPI Desktop: GenAI-Powered Inference texts and hidden states without writing code."""

__version__ = "0.1.0"
