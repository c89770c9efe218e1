"""Stand-in for torchvision, which has no CPU build on this machine (parity harness shim).

qwen_vl_utils imports `torchvision`, `torchvision.io`, `torchvision.transforms` and
`InterpolationMode` at module level but uses them only for videos; NORA's prompts hold one
image. Anything that reaches torchvision's video or tensor code fails loudly here. There is
no dist-info for this stand-in, so transformers' is_torchvision_available() stays False and
it keeps its PIL/numpy image processor.
"""

__version__ = "0.0.0+evalkit.parity.shim"

from . import io, transforms  # noqa: E402,F401
