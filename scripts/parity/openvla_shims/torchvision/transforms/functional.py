"""torchvision.transforms.functional stand-in (OpenVLA parity shim): the PIL branch of resize,
center_crop, to_tensor and normalize, with torchvision's arithmetic."""

import numpy as np


def _size(size, img):
    if isinstance(size, int) or len(size) == 1:  # shorter side to `size`, as torchvision
        s = size if isinstance(size, int) else size[0]
        w, h = img.size
        if w <= h:
            return s, int(s * h / w)
        return int(s * w / h), s
    return size[1], size[0]


def resize(img, size, interpolation=2, max_size=None, antialias=True):
    if not isinstance(interpolation, int):
        interpolation = pil_modes_mapping[interpolation]  # noqa: F821 (set by transforms/__init__)
    return img.resize(_size(size, img), interpolation)


def center_crop(img, output_size):
    if isinstance(output_size, int):
        th = tw = output_size
    elif len(output_size) == 1:
        th = tw = output_size[0]
    else:
        th, tw = output_size
    w, h = img.size
    if (w, h) == (tw, th):
        return img
    if tw > w or th > h:
        raise NotImplementedError("parity shim: center_crop with padding")
    top, left = round((h - th) / 2.0), round((w - tw) / 2.0)
    return img.crop((left, top, left + tw, top + th))


def to_tensor(pic):
    import torch

    array = np.array(pic, copy=True)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    return tensor.to(dtype=torch.get_default_dtype()).div(255) if tensor.dtype == torch.uint8 else tensor


def normalize(tensor, mean, std, inplace=False):
    import torch

    mean = torch.as_tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
    return tensor.sub(mean).div(std)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise NotImplementedError(f"torchvision is shimmed in the OpenVLA parity harness: transforms.functional.{name}")
