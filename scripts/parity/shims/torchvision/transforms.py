"""torchvision.transforms stand-in: the names qwen_vl_utils imports (parity harness shim)."""

import enum


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


class _Unavailable:
    def __getattr__(self, name):
        raise NotImplementedError(f"torchvision is shimmed in the parity harness: transforms.functional.{name}")


functional = _Unavailable()
