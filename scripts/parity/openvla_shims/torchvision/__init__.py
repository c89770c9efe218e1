"""Stand-in for torchvision (no CPU build on this machine), for the OpenVLA parity side env only.

timm 0.9.10 (`timm.data`) and OpenVLA's processing_prismatic.py import torchvision.transforms at
module level. The official PrismaticImageProcessor calls TVF.resize / center_crop / to_tensor /
normalize on a PIL image; on PIL input torchvision does exactly: Image.resize((w, h), mode), a
centred crop box, uint8 HWC -> float CHW / 255, (x - mean) / std. Those four are re-implemented
here with the same arithmetic; anything else fails loudly when used. No dist-info: transformers'
is_torchvision_available() stays False.
"""

__version__ = "0.0.0+evalkit.openvla.parity.shim"

from . import datasets, ops, transforms  # noqa: E402,F401
