"""p4cs: a content switch with a P4 fast path and a Python CS processor."""

__version__ = "0.1.0"
