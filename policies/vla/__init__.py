"""Other VLA adapters: OpenVLA, SpatialVLA, pi0."""
