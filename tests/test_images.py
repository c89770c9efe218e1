"""Named image-preprocessing paths (evalkit.core.images) against their reference code.

Default run: golden outputs that scripts/make_image_goldens.py produced with the real
references (TensorFlow, qwen_vl_utils + Pillow, OpenCV), plus live checks against Pillow.
Opt-in (`-m tf`, where TensorFlow is importable): the numpy re-implementations against
TensorFlow itself on random inputs.
"""

import io
import json
from pathlib import Path

import numpy as np
import pytest

from evalkit.core import images

GOLDEN = Path(__file__).parent / "golden" / "image_paths.npz"
# TF-derived paths: float32 sums whose weights use the C library's sinf; a different libm may
# move a value across a rounding boundary now and then. Pillow / OpenCV paths: exact.
TOLERANCE = {"openvla": 1, "dlimp_lanczos3": 1, "qwen_bicubic": 0, "cv2_area": 0}


def _golden():
    with np.load(GOLDEN) as data:
        return json.loads(str(data["meta"])), {key: data[key] for key in data.files if key != "meta"}


META, OUTPUTS = _golden()
CASES = {case["name"]: case for case in META["cases"]}


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def _frame(case: dict) -> np.ndarray:
    image = images.synthetic_frame(case["height"], case["width"], case["seed"])
    # The goldens were made from this input: a change here would fail every path below.
    assert images.frame_digest(image) == case["input_sha256"], "synthetic_frame changed: regenerate the goldens"
    return image


def test_golden_file_records_its_references():
    versions = META["versions"]
    assert {"tensorflow", "pillow", "qwen-vl-utils", "opencv"} <= set(versions)
    assert GOLDEN.stat().st_size < 400_000
    assert {key.split("/")[1] for key in OUTPUTS} == set(TOLERANCE)


@pytest.mark.parametrize("key", sorted(OUTPUTS))
def test_path_matches_reference_golden(key):
    case_name, path = key.split("/")
    case = CASES[case_name]
    expected = OUTPUTS[key]
    out = images.prepare(path, _frame(case), tuple(case["size"]))
    assert out.dtype == np.uint8 and out.shape == expected.shape
    diff = _diff(out, expected)
    assert diff.max() <= TOLERANCE[path], (
        f"{key}: max {diff.max()}, {np.count_nonzero(diff)} pixels differ from the reference "
        f"({META['versions']})")
    assert np.count_nonzero(diff) <= 0.001 * diff.size  # a rare rounding flip at most


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_jpeg_roundtrip_is_bit_exact_with_tensorflow(case_name):
    case = CASES[case_name]
    assert images.frame_digest(images.jpeg_roundtrip(_frame(case))) == case["tf_jpeg_roundtrip_sha256"]


@pytest.mark.parametrize("shape", [(256, 256), (75, 101), (17, 5)])
@pytest.mark.parametrize("quality", [95, 50])
def test_jpeg_encoder_and_islow_decoder_match_pillow(shape, quality):
    # Pillow encodes the same scan as TF and decodes with libjpeg's accurate IDCT: idct="islow"
    # must agree exactly, including edge blocks of sizes that are not multiples of 16.
    from PIL import Image

    image = images.synthetic_frame(*shape, seed=5)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    assert _diff(images.jpeg_roundtrip(image, quality, idct="islow"), expected).max() == 0


def test_ifast_decoding_differs_from_islow():
    # TF's default IFAST IDCT is why the round trip cannot be Pillow's: they disagree.
    image = images.synthetic_frame(64, 64, seed=7)
    diff = _diff(images.jpeg_roundtrip(image, idct="ifast"), images.jpeg_roundtrip(image, idct="islow"))
    assert diff.max() >= 2


def test_qwen_smart_resize_matches_the_package():
    for key, expected in META["qwen_smart_resize"].items():
        height, width = map(int, key.split("x"))
        assert list(images.qwen_smart_resize(height, width)) == expected, key


def test_tf_resize_keeps_constant_images_and_returns_float32():
    grey = np.full((50, 70, 3), 77, np.uint8)
    for height, width in [(32, 32), (90, 120)]:
        out = images.tf_resize_lanczos3(grey, height, width)
        assert out.dtype == np.float32 and out.shape == (height, width, 3)
        assert np.abs(out - 77).max() < 1e-3
    assert images.tf_resize_lanczos3(grey[..., 0], 20, 30).shape == (20, 30)


def test_tf_round_is_half_to_even_then_clipped():
    values = np.array([0.5, 1.5, 2.5, -3.0, 254.5, 255.5, 300.0], np.float32)
    assert images.tf_round_clip_uint8(values).tolist() == [0, 2, 2, 0, 254, 255, 255]


def test_pil_lanczos_is_the_previous_behaviour():
    # What evalkit's Pillow LANCZOS resize did before these paths.
    from PIL import Image

    image = images.synthetic_frame(256, 256, seed=4)
    expected = np.asarray(Image.fromarray(image).resize((224, 224), Image.LANCZOS))
    assert np.array_equal(images.prepare("pil_lanczos", image), expected)
    assert np.array_equal(images.prepare("pil_lanczos", image, (100, 150)),
                          np.asarray(Image.fromarray(image).resize((150, 100), Image.LANCZOS)))


def test_simpler_openvla_is_cv2_area_and_none_is_identity():
    image = images.synthetic_frame(48, 64, seed=6)
    assert np.array_equal(images.prepare("simpler_openvla", image, 32), images.prepare("cv2_area", image, 32))
    assert np.array_equal(images.prepare("none", image), image)


def test_paths_give_requested_sizes():
    image = images.synthetic_frame(48, 64, seed=6)
    for name in images.IMAGE_PATHS:
        if name == "none":
            continue
        out = images.prepare(name, image, (56, 84))
        assert out.shape == (56, 84, 3) and out.dtype == np.uint8, name


def test_unknown_path_names_the_known_ones():
    with pytest.raises(ValueError, match="known: openvla, dlimp_lanczos3, qwen_bicubic"):
        images.prepare("tf_lanczos", np.zeros((8, 8, 3), np.uint8))


def test_paths_reject_non_rgb_uint8():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        images.prepare("openvla", np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        images.prepare("dlimp_lanczos3", np.zeros((8, 8), np.uint8))


# -- opt-in: against TensorFlow itself ----------------------------------------------------------

def _tf():
    return pytest.importorskip("tensorflow", reason="TensorFlow is not installed; this check runs where it is "
                                                    "(e.g. /work/sidevenvs/tf, see scripts/make_image_goldens.py)")


RANDOM_GEOMETRIES = [((256, 256), (224, 224)), ((480, 640), (224, 224)), ((512, 640), (256, 320)),
                     ((75, 101), (40, 56)), ((24, 30), (60, 45)), ((64, 64), (64, 64)), ((9, 200), (30, 17))]


@pytest.mark.tf
@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("in_size, out_size", RANDOM_GEOMETRIES)
def test_tf_resize_lanczos3_against_tensorflow(in_size, out_size, antialias):
    tf = _tf()
    rng = np.random.default_rng(abs(hash((in_size, out_size))) % 2**32)
    image = rng.integers(0, 256, (*in_size, 3), dtype=np.uint8)
    expected = tf.image.resize(image, out_size, method="lanczos3", antialias=antialias).numpy()
    out = images.tf_resize_lanczos3(image, *out_size, antialias=antialias)
    print(f"{in_size}->{out_size} antialias={antialias}: float max diff {np.abs(out - expected).max():.3g}")
    assert np.abs(out - expected).max() <= 1e-3
    rounded = tf.cast(tf.clip_by_value(tf.round(expected), 0, 255), tf.uint8).numpy()
    assert _diff(images.tf_round_clip_uint8(out), rounded).max() <= 1


@pytest.mark.tf
@pytest.mark.parametrize("in_size, out_size", RANDOM_GEOMETRIES)
def test_openvla_path_against_tensorflow(in_size, out_size):
    tf = _tf()
    rng = np.random.default_rng(7 + in_size[0] * 1000 + in_size[1])
    # Random noise over a smooth image: both JPEG's high frequencies and real-looking content.
    image = np.clip(images.synthetic_frame(*in_size, seed=8).astype(np.int16)
                    + rng.integers(-40, 41, (*in_size, 3)), 0, 255).astype(np.uint8)
    decoded = tf.io.decode_image(tf.image.encode_jpeg(image), expand_animations=False, dtype=tf.uint8)
    assert _diff(images.jpeg_roundtrip(image), decoded.numpy()).max() == 0
    resized = tf.image.resize(decoded, out_size, method="lanczos3", antialias=True)
    expected = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()
    diff = _diff(images.prepare("openvla", image, out_size), expected)
    print(f"openvla {in_size}->{out_size}: max diff {diff.max()}, {np.count_nonzero(diff)} pixels differ")
    assert diff.max() <= 1
