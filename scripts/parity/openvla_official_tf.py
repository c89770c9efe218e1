"""Official side, image stage: OpenVLA's LIBERO `get_vla_action` (experiments/robot/openvla_utils.py),
imported from the exported openvla tree and called with center_crop=True on each case's 224 frame.
Runs in a TensorFlow side env (tensorflow-cpu; no torch/transformers there).

Shims (here only; the official file is not modified):
  - `torch`, `transformers`, `prismatic.*`: MagicMock modules (openvla_utils imports them at module
    level; the crop and prompt code does not use them);
  - the processor and the VLA handed to get_vla_action are recorders: the processor keeps the prompt
    and the PIL image it is given (the official cropped frame) and returns an object whose `.to()`
    is a no-op; the VLA's predict_action returns zeros (the model runs in the other side env).

    python openvla_official_tf.py --src SRC/openvla --work DIR
"""

import argparse
import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np

MOCKED = ["torch", "transformers", "prismatic", "prismatic.extern", "prismatic.extern.hf",
          "prismatic.extern.hf.configuration_prismatic", "prismatic.extern.hf.modeling_prismatic",
          "prismatic.extern.hf.processing_prismatic"]


class RecordingProcessor:
    def __init__(self):
        self.calls = []

    def __call__(self, prompt, image):
        self.calls.append((prompt, np.asarray(image).copy()))
        inputs = mock.MagicMock()
        inputs.to.return_value = {}
        return inputs


class ZeroVLA:
    def predict_action(self, **kwargs):
        return np.zeros(7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    for name in MOCKED:
        sys.modules[name] = mock.MagicMock(name=name)
    sys.path.insert(0, str(args.src))
    from experiments.robot import openvla_utils as official
    import tensorflow as tf

    cases = json.loads((args.work / "cases.json").read_text())
    with np.load(args.work / "images.npz") as f:
        images = {k: f[k] for k in f.files}
    processor, crops, prompts = RecordingProcessor(), {}, {}
    for case in cases:
        obs = {"full_image": images[case["image"]]}
        official.get_vla_action(ZeroVLA(), processor, "openvla/openvla-7b", obs, case["instruction"],
                                "libero_spatial", center_crop=True)
        prompts[case["name"]], crops[case["name"]] = processor.calls[-1]
    np.savez(args.work / "official_crops.npz", **crops)
    (args.work / "official_tf.json").write_text(json.dumps({"prompts": prompts, "tensorflow": tf.__version__},
                                                           indent=1))


if __name__ == "__main__":
    main()
