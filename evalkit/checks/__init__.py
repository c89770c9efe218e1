"""Checks of an install: simulator drift (doctor)."""
