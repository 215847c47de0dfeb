"""Storage backends: one module each, behind the interface in ``base``."""
