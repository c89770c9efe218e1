"""Regenerate tests/golden/image_paths.npz from the real reference code.

Runs in a side environment with the references installed, never in the project venv:

    python3 -m venv /work/sidevenvs/tf
    /work/sidevenvs/tf/bin/pip install tensorflow-cpu qwen-vl-utils pillow opencv-python-headless numpy
    PYTHONPATH=. /work/sidevenvs/tf/bin/python scripts/make_image_goldens.py

Each case is a deterministic evalkit.core.images.synthetic_frame (recorded by shape, seed and
sha256); each path's golden output comes from the code the path follows: TensorFlow for
openvla and dlimp_lanczos3, qwen_vl_utils.process_vision_info (+ Pillow) for qwen_bicubic,
OpenCV for cv2_area. evalkit.core.images is used only to build the inputs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import types
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from evalkit.core.images import frame_digest, synthetic_frame  # noqa: E402

ALL_PATHS = ("openvla", "dlimp_lanczos3", "qwen_bicubic", "cv2_area")
# (name, height, width, seed, output size (height, width), paths): LIBERO's 256x256 agent
# view; SimplerEnv's 480x640 frame with the paths SimplerEnv adapters use (Octo / NORA-1.5:
# lanczos3; OpenVLA / SpatialVLA: INTER_AREA), which also keeps the file small; an odd-sized
# non-square frame (JPEG edge blocks, two scales); a small frame that is upsampled.
CASES = [
    ("libero_256", 256, 256, 0, (224, 224), ALL_PATHS),
    ("simpler_480x640", 480, 640, 2, (224, 224), ("dlimp_lanczos3", "cv2_area")),
    ("odd_75x101", 75, 101, 1, (40, 56), ALL_PATHS),
    ("upscale_24x30", 24, 30, 3, (40, 52), ALL_PATHS),
]
# qwen_vl_utils.smart_resize answers recorded for the unit test of evalkit's copy.
SMART_RESIZE_SIZES = [(224, 224), (256, 256), (40, 56), (40, 52), (14, 14), (42, 42), (70, 70),
                      (480, 640), (100, 3000), (20000, 20000)]


def import_qwen_vl_utils():
    """qwen_vl_utils imports torch and torchvision at module level for its video readers; its
    image path (fetch_image) uses only Pillow. Where they are not installed, empty stand-ins
    let the module import; any video call would fail loudly."""
    try:
        import qwen_vl_utils
        return qwen_vl_utils
    except ImportError:
        pass
    torch = types.ModuleType("torch")
    torch.Tensor = type("Tensor", (), {})
    torchvision = types.ModuleType("torchvision")
    torchvision.io = types.ModuleType("torchvision.io")
    torchvision.transforms = types.ModuleType("torchvision.transforms")
    torchvision.transforms.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic")
    for module in (torch, torchvision, torchvision.io, torchvision.transforms):
        sys.modules.setdefault(module.__name__, module)
    import qwen_vl_utils
    return qwen_vl_utils


def tf_openvla(image: np.ndarray, size: tuple) -> np.ndarray:
    """openvla experiments/robot/libero/libero_utils.py resize_image, line for line."""
    img = tf.image.encode_jpeg(image)
    img = tf.io.decode_image(img, expand_animations=False, dtype=tf.uint8)
    img = tf.image.resize(img, size, method="lanczos3", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8).numpy()


def tf_jpeg_roundtrip(image: np.ndarray) -> np.ndarray:
    return tf.io.decode_image(tf.image.encode_jpeg(image), expand_animations=False, dtype=tf.uint8).numpy()


def tf_dlimp(image: np.ndarray, size: tuple) -> np.ndarray:
    """dlimp/utils.py resize_image."""
    img = tf.image.resize(tf.convert_to_tensor(image), size, method="lanczos3", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8).numpy()


def qwen(image: np.ndarray, size: tuple) -> np.ndarray:
    """NORA's message (inference/nora.py) through qwen_vl_utils.process_vision_info."""
    qwen_vl_utils = import_qwen_vl_utils()
    messages = [{"role": "user", "content": [
        {"type": "image", "image": Image.fromarray(image), "resized_height": size[0], "resized_width": size[1]},
        {"type": "text", "text": "pick up the bowl"}]}]
    image_inputs, _ = qwen_vl_utils.process_vision_info(messages)
    return np.asarray(image_inputs[0])


def cv2_area(image: np.ndarray, size: tuple) -> np.ndarray:
    """SimplerEnv spatialvla_model.py / openvla_model.py _resize_image."""
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)


REFERENCES = {"openvla": tf_openvla, "dlimp_lanczos3": tf_dlimp, "qwen_bicubic": qwen, "cv2_area": cv2_area}


def versions() -> dict:
    return {
        "tensorflow": tf.__version__,
        "pillow": importlib.metadata.version("pillow"),
        "qwen-vl-utils": importlib.metadata.version("qwen-vl-utils"),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "libc": " ".join(platform.libc_ver()),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests/golden/image_paths.npz"))
    args = parser.parse_args()
    arrays, cases = {}, []
    for name, height, width, seed, size, paths in CASES:
        image = synthetic_frame(height, width, seed)
        cases.append({"name": name, "height": height, "width": width, "seed": seed, "size": list(size),
                      "input_sha256": frame_digest(image),
                      "tf_jpeg_roundtrip_sha256": frame_digest(tf_jpeg_roundtrip(image))})
        for path in paths:
            arrays[f"{name}/{path}"] = REFERENCES[path](image, size)
    smart = import_qwen_vl_utils().smart_resize
    meta = {"versions": versions(), "cases": cases,
            "qwen_smart_resize": {f"{h}x{w}": list(smart(h, w, factor=28)) for h, w in SMART_RESIZE_SIZES},
            "command": "PYTHONPATH=. /work/sidevenvs/tf/bin/python scripts/make_image_goldens.py"}
    np.savez_compressed(args.out, meta=np.array(json.dumps(meta, indent=1)), **arrays)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KiB): {', '.join(sorted(arrays))}")
    print(json.dumps(meta["versions"]))


if __name__ == "__main__":
    main()
