"""NORA-1.5 post-training tools: action and world-model rewards, world-model adapters, preference pairs."""
