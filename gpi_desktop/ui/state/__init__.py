"""The window's state as plain data with pure functions over it; no Qt (a contract in pyproject.toml)."""
