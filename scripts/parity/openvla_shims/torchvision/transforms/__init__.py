"""torchvision.transforms stand-in (OpenVLA parity shim): Compose/Resize/CenterCrop/ToTensor/Normalize
as plain records of their parameters (OpenVLA's processor reads them back and calls functional)."""

import enum

from . import functional  # noqa: F401


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


functional.InterpolationMode = InterpolationMode
functional.pil_modes_mapping = {InterpolationMode.NEAREST: 0, InterpolationMode.BILINEAR: 2,
                                InterpolationMode.BICUBIC: 3, InterpolationMode.NEAREST_EXACT: 0,
                                InterpolationMode.BOX: 4, InterpolationMode.HAMMING: 5, InterpolationMode.LANCZOS: 1}


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class Resize:
    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
        self.size, self.interpolation, self.max_size, self.antialias = size, interpolation, max_size, antialias

    def __call__(self, img):
        return functional.resize(img, self.size, functional.pil_modes_mapping[self.interpolation])


class CenterCrop:
    def __init__(self, size):
        # torchvision's _setup_size: a number -> (n, n), a 1-sequence -> (s, s), else kept as given
        self.size = (int(size), int(size)) if isinstance(size, (int, float)) else (
            (size[0], size[0]) if len(size) == 1 else size)

    def __call__(self, img):
        return functional.center_crop(img, self.size)


class ToTensor:
    def __call__(self, pic):
        return functional.to_tensor(pic)


class Normalize:
    def __init__(self, mean, std, inplace=False):
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, tensor):
        return functional.normalize(tensor, self.mean, self.std)


def __getattr__(name):  # e.g. RandomResizedCrop, only used by timm's training transforms
    if name.startswith("__"):
        raise AttributeError(name)

    class Unavailable:
        def __init__(self, *args, **kwargs):
            raise NotImplementedError(f"torchvision is shimmed in the OpenVLA parity harness: transforms.{name}")

    Unavailable.__name__ = name
    return Unavailable
