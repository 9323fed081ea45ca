"""Shared by the desktop agent and the verifier: the Web eID format, algorithms, taxpayer IDs, errors."""
