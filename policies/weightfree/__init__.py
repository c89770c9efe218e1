"""Policies that need no checkpoint: zero, random, replay, scripted reach, the privileged oracle."""
