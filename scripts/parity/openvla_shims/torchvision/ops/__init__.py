"""torchvision.ops stand-in (OpenVLA parity shim)."""
