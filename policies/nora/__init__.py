"""The NORA family (NORA, NORA-LONG, NORA-1.5) with its FAST+ action codec and tiny test checkpoints."""
