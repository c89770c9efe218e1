"""OpenVLA and SpatialVLA adapters: pure-numpy decode on hand-worked token ids, and our side of
the models (inputs, chunks, conventions) against fakes with the remote code's API. No weights."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from evalkit.core.conventions import Postprocessor  # noqa: E402
from evalkit.core.types import Observation  # noqa: E402
from policies.normalization import read_action_stats  # noqa: E402
from policies.vla.openvla import (  # noqa: E402
    OpenVLAPolicy, center_crop, decode_action_tokens, prompt_for, resolve_unnorm_key, tokens_to_action,
)
from policies.vla.spatialvla import SpatialVLAPolicy  # noqa: E402

STATS = {"libero_spatial_no_noops": {"action": {
    "q01": [-0.5] * 6 + [0.0], "q99": [0.5] * 6 + [1.0], "mask": [True] * 6 + [False]}}}


# -- OpenVLA ------------------------------------------------------------------------------

def test_openvla_token_ids_decode_to_bin_centres():
    # 256 edges over [-1, 1] are 2/255 apart; centre k = -1 + (2k + 1)/255; id 31999 is bin 0.
    ids = [31999, 31998, 31872, 31871, 31745, 31744, 5]
    expected = [-254 / 255, -252 / 255, 0.0, 2 / 255, 254 / 255, 254 / 255, 254 / 255]
    assert np.allclose(decode_action_tokens(ids), expected, atol=1e-12)


def test_openvla_unnormalises_all_but_the_masked_gripper():
    stats = read_action_stats(STATS, "libero_spatial_no_noops")
    action = tokens_to_action([31872, 31999, 31744, 31872, 31872, 31872, 31744], stats)
    # 0.5 * (a + 1) * (q99 - q01) + q01 with q01 = -0.5, q99 = 0.5: a itself halved
    assert np.allclose(action[:3], [0.0, -127 / 255, 127 / 255], atol=1e-12)
    assert action[6] == pytest.approx(254 / 255)  # the gripper stays in the model's [-1, 1] bin value


def test_openvla_prompt_and_unnorm_key_fallback():
    assert prompt_for("Put the Bowl on the plate") == \
        "In: What action should the robot take to put the bowl on the plate?\nOut:"
    assert resolve_unnorm_key(STATS, "libero_spatial") == "libero_spatial_no_noops"
    assert resolve_unnorm_key(STATS, None) is None


def test_center_crop_keeps_the_central_90_percent_of_the_area():
    gradient = np.tile(np.arange(224, dtype=np.uint8)[None, :, None], (224, 1, 3))
    cropped = center_crop(gradient)
    margin = (1 - np.sqrt(0.9)) / 2 * 224  # ~5.7 px cut on each side, then stretched back to 224
    assert cropped.shape == (224, 224, 3)
    assert abs(float(cropped[112, 0, 0]) - margin) < 1.5 and abs(float(cropped[112, -1, 0]) - (223 - margin)) < 1.5


class FakeOpenVLAProcessor:
    def __init__(self):
        self.calls = []

    def __call__(self, prompt, image, return_tensors="pt"):
        self.calls.append((prompt, np.asarray(image)))
        return {"input_ids": torch.tensor([[1, 512, 29901]]), "attention_mask": torch.ones((1, 3), dtype=torch.long),
                "pixel_values": torch.zeros((1, 6, 224, 224))}


class FakeOpenVLA(torch.nn.Module):
    """generate() appends fixed action ids and records what it was given."""

    def __init__(self, action_ids):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.action_ids = torch.tensor([action_ids])
        self.kwargs = {}

    def generate(self, input_ids, **kwargs):
        self.kwargs = {"input_ids": input_ids, **kwargs}
        return torch.cat([input_ids, self.action_ids], dim=1)


def test_openvla_act_builds_reference_inputs_and_decodes_its_tokens():
    ids = [31872, 31999, 31744, 31872, 31800, 31900, 31744]
    processor, model = FakeOpenVLAProcessor(), FakeOpenVLA(ids)
    policy = OpenVLAPolicy.with_model(processor, model, STATS, unnorm_key="libero_spatial", crop=True)
    frame = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    chunk = policy.act(Observation(images={"agentview": frame}), "Pick up the bowl")
    assert chunk.shape == (1, 7) and policy.spec.action_convention == "rlds"
    assert np.allclose(chunk[0], tokens_to_action(ids, read_action_stats(STATS, "libero_spatial_no_noops")))
    prompt, image = processor.calls[0]
    assert prompt == "In: What action should the robot take to pick up the bowl?\nOut:" and image.shape == (224, 224, 3)
    assert model.kwargs["input_ids"][0, -1] == 29871 and model.kwargs["attention_mask"].shape == (1, 4)
    assert model.kwargs["max_new_tokens"] == 7 and model.kwargs["do_sample"] is False
    # LIBERO gets the gripper as -1 (open) / +1 (close): 254/255 -> open
    assert Postprocessor("libero", policy.spec.action_convention)(chunk[0])[6] == -1.0


# -- SpatialVLA ---------------------------------------------------------------------------

class FakeSpatialProcessor:
    """The remote-code processor's API: statistics, chunk size, observation window, __call__, decode_actions."""

    def __init__(self, num_obs_steps=1, chunk=4):
        self.statistics = {"bridge_orig/1.0.0": {}, "fractal20220817_data/0.1.0": {}}
        self.action_chunk_size, self.num_obs_steps, self.obs_delta = chunk, num_obs_steps, 1
        self.calls, self.decoded_with = [], []

    def __call__(self, images, text, unnorm_key, return_tensors, do_normalize):
        self.calls.append(([np.asarray(i) for i in images], text, unnorm_key, do_normalize))
        return {"input_ids": torch.tensor([[2, 3]]), "pixel_values": torch.zeros((len(images), 3, 224, 224))}

    def decode_actions(self, generation_outputs, unnorm_key):
        self.decoded_with.append((generation_outputs, unnorm_key))
        return {"actions": np.arange(self.action_chunk_size * 7).reshape(self.action_chunk_size, 7) / 100.0}


class FakeSpatialModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, dtype=torch.bfloat16))
        self.inputs = None

    def predict_action(self, inputs):
        self.inputs = inputs
        return "generated-ids"


def frame(value):
    return np.full((256, 256, 3), value, np.uint8)


def test_spatialvla_chunk_and_inputs_come_from_the_processor():
    processor, model = FakeSpatialProcessor(), FakeSpatialModel()
    policy = SpatialVLAPolicy.with_model(processor, model, unnorm_key="bridge_orig")
    chunk = policy.act(Observation(images={"agentview": frame(7)}), "put the carrot on the plate")
    assert policy.spec.chunk_size == 4 and chunk.shape == (4, 7) and not policy.spec.stateful
    assert np.array_equal(chunk, np.arange(28).reshape(4, 7) / 100.0)
    images, text, key, normalise = processor.calls[0]
    assert [i.shape for i in images] == [(224, 224, 3)] and text == "put the carrot on the plate"
    assert key == "bridge_orig/1.0.0" and normalise is False
    assert processor.decoded_with == [("generated-ids", "bridge_orig/1.0.0")]
    assert model.inputs["pixel_values"].dtype == torch.bfloat16 and model.inputs["input_ids"].dtype == torch.long


def test_spatialvla_holds_the_google_sticky_gripper_10_steps():
    from evalkit.core.conventions import postprocessor_for
    from evalkit.core.suite import Suite

    policy = SpatialVLAPolicy.with_model(FakeSpatialProcessor(), FakeSpatialModel(), unnorm_key="bridge_orig")
    google = Suite("g", 10, 1, "G", [], None, robot="google_robot")
    post = postprocessor_for(google, policy.spec)
    grips = [post(np.array([0, 0, 0, 0, 0, 0, g]))[6] for g in [1.0] + [0.0] * 12]
    assert post.name.endswith("sticky_gripper(10,on_sticky_start)") and grips[1:11] == [1.0] * 10 and grips[11] == 0.0


def test_spatialvla_keeps_an_observation_window_per_episode():
    processor = FakeSpatialProcessor(num_obs_steps=2)
    policy = SpatialVLAPolicy.with_model(processor, FakeSpatialModel(), unnorm_key="fractal20220817_data")
    assert policy.spec.stateful  # the window is episode state
    for value in (10, 20):
        policy.act(Observation(images={"agentview": frame(value)}), "open the drawer")
    policy.reset()
    policy.act(Observation(images={"agentview": frame(30)}), "open the drawer")
    windows = [[int(i[0, 0, 0]) for i in call[0]] for call in processor.calls]
    assert windows == [[10, 10], [10, 20], [30, 30]]


def test_spatialvla_rejects_an_unknown_key_and_a_wrong_chunk():
    with pytest.raises(ValueError, match="bridge_orig/1.0.0"):
        SpatialVLAPolicy.with_model(FakeSpatialProcessor(), FakeSpatialModel(), unnorm_key="libero")
    processor = FakeSpatialProcessor()
    policy = SpatialVLAPolicy.with_model(processor, FakeSpatialModel(), unnorm_key="bridge_orig")
    processor.action_chunk_size = 2  # decode now returns 2 rows, the spec promised 4
    with pytest.raises(ValueError, match="expected \\(4, 7\\)"):
        policy.act(Observation(images={"agentview": frame(1)}), "x")


def test_loaders_name_the_missing_checkpoint(tmp_path):
    from policies.hub import CheckpointError

    with pytest.raises(CheckpointError, match="OpenVLA checkpoint folder .*no-such-checkpoint does not exist"):
        OpenVLAPolicy(checkpoint=str(tmp_path / "no-such-checkpoint"), device="cpu")
    with pytest.raises(CheckpointError, match="SpatialVLA checkpoint folder"):
        SpatialVLAPolicy(checkpoint=str(tmp_path / "nope"))


# -- OpenVLA against the official code (tests/golden/openvla_parity.json, written by
#    scripts/parity/openvla_parity.py from openvla/openvla's own code) ----------------------

def _openvla_golden():
    import json
    from pathlib import Path

    return json.loads((Path(__file__).parent / "golden" / "openvla_parity.json").read_text())


def _golden_frame(name):
    """The formula-built 224 frames of scripts/parity/openvla_evalkit.py (same names and seeds)."""
    if name == "gradient":
        y, x = np.mgrid[0:224, 0:224]
        return np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)
    if name == "edges":
        cells = np.random.default_rng(17).integers(0, 256, (14, 14, 3))
        return np.kron(cells, np.ones((16, 16, 1))).astype(np.uint8)
    return np.random.default_rng(18).integers(0, 256, (224, 224, 3), dtype=np.uint8)


def test_openvla_center_crop_matches_the_official_tf_crop_value_for_value():
    # get_vla_action: float32 [0, 1], tf.image.crop_and_resize, convert_image_dtype(saturate) (x 255.5,
    # truncated). Pillow's bilinear on the same box rounds instead: ~1 value in 5 was 1 too high.
    import hashlib

    golden = _openvla_golden()["crops"]
    assert set(golden) == {"gradient", "edges", "noise"}
    for name, want in golden.items():
        cropped = np.ascontiguousarray(center_crop(_golden_frame(name)))
        assert cropped.dtype == np.uint8 and cropped.shape == (224, 224, 3)
        assert cropped.reshape(-1, 3).sum(0).tolist() == want["channel_sums"], name
        assert hashlib.sha256(cropped.tobytes()).hexdigest() == want["sha256"], name


def test_openvla_decode_and_unnormalise_match_official_predict_action():
    golden = _openvla_golden()
    stats = read_action_stats({"libero_spatial_no_noops": golden["stats"]}, "libero_spatial_no_noops")
    assert len(golden["actions"]) >= 5
    for name, case in golden["actions"].items():
        assert prompt_for(case["instruction"]) == case["prompt"], name
        np.testing.assert_allclose(decode_action_tokens(case["tokens"]), case["normalised"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(tokens_to_action(case["tokens"], stats), case["actions"], rtol=0, atol=1e-12)
