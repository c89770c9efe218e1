"""Named image-preprocessing paths: how each reference evaluation loop turns a camera frame
into the model's input image. Adapters choose one by name (PolicySpec.image_path) and runs
record it.

Image models notice resampling details: Pillow's LANCZOS differs from OpenVLA's LIBERO path
(JPEG round trip, then TensorFlow's antialiased lanczos3) by a mean 5.9 and a max 59 levels
on a 256x256 LIBERO frame. Each path follows one reference's code (docstrings name it):

  openvla          JPEG round trip at TF's defaults + TF lanczos3 (OpenVLA's LIBERO and Bridge loops)
  dlimp_lanczos3   TF lanczos3 (antialias) + round/clip, no JPEG (dlimp, Octo, NORA-1.5)
  qwen_bicubic     qwen_vl_utils: smart_resize to a multiple of 28, Pillow BICUBIC (NORA, NORA-LONG)
  cv2_area         cv2.resize INTER_AREA (SpatialVLA's SimplerEnv adapter)
  simpler_openvla  SimplerEnv's own OpenVLA adapter: the same cv2 INTER_AREA resize
  pil_lanczos      Pillow LANCZOS (evalkit's behaviour before these paths)
  none             the frame as given

TensorFlow is never imported: `tf_resize_lanczos3` re-implements its ScaleAndTranslate
kernel and `jpeg_roundtrip` the libjpeg-turbo codec TF uses, in numpy. Pillow and OpenCV
are imported only by the paths that call them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import functools
import hashlib
import math
from typing import Callable, Union

import numpy as np

if TYPE_CHECKING:
    from evalkit.core.types import PolicySpec

Size = Union[int, tuple]  # 224 or (height, width)

# -- TensorFlow's tf.image.resize(method="lanczos3") ---------------------------------------
# tf.image.resize with a lanczos kernel calls ScaleAndTranslate (scale_and_translate_op.cc):
# per axis, each output pixel is a normalised weighted sum over a span of input pixels,
# half-pixel centres, the kernel widened by 1/scale when downsampling with antialias. All in
# float32 and accumulated in order, rows (height) first, then columns: done the same here.

_F32 = np.float32
_PI = _F32(3.14159265359)  # the float constant of TF's LanczosKernelFunc


@functools.lru_cache(maxsize=1)
def _libm_sinf():
    """The C library's sinf, which TF's kernel calls, or None where it cannot be loaded."""
    try:
        import ctypes
        import ctypes.util

        sinf = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6").sinf
    except (OSError, AttributeError):
        return None
    sinf.restype, sinf.argtypes = ctypes.c_float, [ctypes.c_float]
    return sinf


def _sinf(a: np.ndarray) -> np.ndarray:
    """float32 sine as TF gets it. numpy's float32 sine is an approximation 1 ulp off for
    many arguments, and even the correctly rounded sine (float64, rounded) differs from
    glibc's sinf now and then, so the C function itself is called (a few thousand calls
    per resize geometry, cached)."""
    sinf = _libm_sinf()
    if sinf is None:
        return np.sin(a.astype(np.float64)).astype(_F32)
    return np.array([sinf(v) for v in a.ravel().tolist()], dtype=_F32).reshape(a.shape)


def _lanczos(x: np.ndarray, radius: np.float32) -> np.ndarray:
    """TF's LanczosKernelFunc on |x| (float32), evaluated in the same order."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = radius * _sinf(_PI * x) * _sinf(_PI * x / radius) / (_PI * _PI * x * x)
    value = np.where(x.astype(np.float64) <= 1e-3, _F32(1.0), value)  # TF compares in double
    return np.where(x > radius, _F32(0.0), value).astype(_F32)


@functools.lru_cache(maxsize=64)
def _tf_spans(in_size: int, out_size: int, antialias: bool, radius: float = 3.0):
    """(source indices, weights), both (out_size, span): ComputeSpansCore for one axis."""
    radius = _F32(radius)
    scale = _F32(out_size) / _F32(in_size)                # python side: float32 sizes divided
    inv_scale = _F32(1.0 / np.float64(scale))             # C++ `1.0 / scale`: double, stored as float
    kernel_scale = max(inv_scale, _F32(1.0)) if antialias else _F32(1.0)
    reach = radius * kernel_scale
    span = min(2 * int(np.ceil(reach)) + 1, in_size)
    sample = (np.arange(out_size, dtype=_F32) + _F32(0.5)) * inv_scale
    start = np.clip(np.ceil(sample - reach - _F32(0.5)).astype(np.int64), 0, in_size - 1)
    end = np.clip(np.floor(sample + reach - _F32(0.5)).astype(np.int64), 0, in_size - 1) + 1
    source = start[:, None] + np.arange(span)
    position = (source.astype(_F32) + _F32(0.5)) - sample[:, None]
    weights = _lanczos(np.abs(position * (_F32(1.0) / kernel_scale)), radius)
    weights = np.where(source < end[:, None], weights, _F32(0.0))  # outside the span: zero, as TF
    total = np.zeros(out_size, _F32)
    for k in range(span):  # TF sums the weights in order, in float32
        total = total + weights[:, k]
    weights = weights * (_F32(1.0) / total)[:, None]
    return np.minimum(source, in_size - 1), weights.astype(_F32)


def _gather(image: np.ndarray, source: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Weighted sums along `axis` (0 = rows, 1 = columns), accumulated term by term in float32."""
    out = None
    for k in range(source.shape[1]):
        taken = np.take(image, source[:, k], axis=axis)
        w = weights[:, k].reshape((-1, 1, 1) if axis == 0 else (1, -1, 1))
        term = w * taken
        out = term if out is None else out + term
    return out


def tf_resize_lanczos3(image: np.ndarray, height: int, width: int, antialias: bool = True) -> np.ndarray:
    """`tf.image.resize(image, (height, width), method="lanczos3", antialias=antialias)` in numpy.

    HxWxC (or HxW) input of any real dtype; float32 output, unrounded and unclipped, as TF's.
    Bit-exact with TF's CPU kernel (checked against TF 2.21) where the C library's sinf loads;
    elsewhere a weight may be 1 ulp off, so now and then a rounded pixel is 1 level off.
    """
    image = np.asarray(image)
    flat = image.ndim == 2
    pixels = (image[..., None] if flat else image).astype(_F32)
    rows, row_weights = _tf_spans(pixels.shape[0], int(height), antialias)
    cols, col_weights = _tf_spans(pixels.shape[1], int(width), antialias)
    out = _gather(_gather(pixels, rows, row_weights, axis=0), cols, col_weights, axis=1)
    return out[..., 0] if flat else out


def tf_round_clip_uint8(image: np.ndarray) -> np.ndarray:
    """`tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)`: tf.round rounds half to even, as numpy."""
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


# -- JPEG round trip as TensorFlow's libjpeg-turbo does it ----------------------------------
# tf.image.encode_jpeg (quality 95, 4:2:0, baseline) then tf.io.decode_image. Pillow encodes
# the same scan bit for bit, but decodes with the accurate integer IDCT, while TF decodes with
# libjpeg's IFAST IDCT (up to 14 levels apart on test frames). So the codec is re-implemented
# here, pixel-exact with TF's and Pillow's libjpeg-turbo (checked at several sizes): colour
# conversion, 2x2 chroma averaging, integer forward DCT and quantisation as libjpeg-turbo's
# encoder; dequantisation, IFAST (or ISLOW) inverse DCT, "fancy" chroma upsampling and colour
# conversion as its decoder. Entropy coding is lossless, so it is left out. All integer maths.

_LUMA_QUANT = np.array([  # JPEG Annex K tables (libjpeg jcparam.c), row-major
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8)
_CHROMA_QUANT = np.full((8, 8), 99)
_CHROMA_QUANT[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def _fix(x: float, bits: int) -> int:
    """libjpeg's FIX(): a constant in fixed point, rounded."""
    return int(x * (1 << bits) + 0.5)


def _descale(x: np.ndarray, n: int) -> np.ndarray:
    """libjpeg's DESCALE: right shift rounding half up (arithmetic shift: floor for negatives)."""
    return (x + (1 << (n - 1))) >> n


def quant_table(base: np.ndarray, quality: int) -> np.ndarray:
    """jpeg_set_quality(quality, force_baseline=TRUE): the scaled table, entries 1..255."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


# Forward and inverse "islow" DCT (jfdctint.c / jidctint.c): 13-bit constants, 2 extra bits
# kept between the passes. Each 1-D pass takes the 8 rows (or columns) as a list of arrays.
_C = {name: _fix(value, 13) for name, value in {
    "0_298": 0.298631336, "0_390": 0.390180644, "0_541": 0.541196100, "0_765": 0.765366865,
    "0_899": 0.899976223, "1_175": 1.175875602, "1_501": 1.501321110, "1_847": 1.847759065,
    "1_961": 1.961570560, "2_053": 2.053119869, "2_562": 2.562915447, "3_072": 3.072711026}.items()}


def _islow_odd(t0, t1, t2, t3):
    """The shared odd-part rotation of the islow DCTs (t0..t3 = the paper's i0..i3)."""
    z1, z2, z3, z4 = t0 + t3, t1 + t2, t0 + t2, t1 + t3
    z5 = (z3 + z4) * _C["1_175"]
    z3 = z3 * -_C["1_961"] + z5
    z4 = z4 * -_C["0_390"] + z5
    z1, z2 = z1 * -_C["0_899"], z2 * -_C["2_562"]
    return (t0 * _C["0_298"] + z1 + z3, t1 * _C["2_053"] + z2 + z4,
            t2 * _C["3_072"] + z2 + z3, t3 * _C["1_501"] + z1 + z4)


def _fdct_islow_1d(d, first_pass: bool):
    t0, t7, t1, t6 = d[0] + d[7], d[0] - d[7], d[1] + d[6], d[1] - d[6]
    t2, t5, t3, t4 = d[2] + d[5], d[2] - d[5], d[3] + d[4], d[3] - d[4]
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    shift = 11 if first_pass else 15  # CONST_BITS -/+ PASS1_BITS
    out = [None] * 8
    if first_pass:
        out[0], out[4] = (t10 + t11) << 2, (t10 - t11) << 2
    else:
        out[0], out[4] = _descale(t10 + t11, 2), _descale(t10 - t11, 2)
    z1 = (t12 + t13) * _C["0_541"]
    out[2] = _descale(z1 + t13 * _C["0_765"], shift)
    out[6] = _descale(z1 - t12 * _C["1_847"], shift)
    o7, o5, o3, o1 = _islow_odd(t4, t5, t6, t7)
    out[7], out[5], out[3], out[1] = (_descale(v, shift) for v in (o7, o5, o3, o1))
    return out


def _idct_islow_1d(d, first_pass: bool):
    z1 = (d[2] + d[6]) * _C["0_541"]
    t2, t3 = z1 - d[6] * _C["1_847"], z1 + d[2] * _C["0_765"]
    t0, t1 = (d[0] + d[4]) << 13, (d[0] - d[4]) << 13
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    o0, o1, o2, o3 = _islow_odd(d[7], d[5], d[3], d[1])
    shift = 11 if first_pass else 18  # the second pass also removes the DCT's factor 8
    return [_descale(v, shift) for v in (t10 + o3, t11 + o2, t12 + o1, t13 + o0,
                                         t13 - o0, t12 - o1, t11 - o2, t10 - o3)]


# Inverse "ifast" DCT (jidctfst.c, Arai-Agui-Nakajima): 8-bit constants, products truncated
# (libjpeg builds it without USE_ACCURATE_ROUNDING), output truncated too; the coefficients
# are pre-multiplied by the AAN scale factors at dequantisation.
_IFAST = {"1_082": 277, "1_414": 362, "1_847": 473, "2_613": 669}
_AAN = np.array([1.0] + [np.cos(k * np.pi / 16) * np.sqrt(2) for k in range(1, 8)])
_AAN_SCALES = np.floor(np.outer(_AAN, _AAN) * (1 << 14) + 0.5).astype(np.int64)  # jddctmgr.c's aanscales


def _idct_ifast_1d(d, first_pass: bool):
    mul = lambda x, c: (x * c) >> 8  # noqa: E731  MULTIPLY: truncating
    t10, t11 = d[0] + d[4], d[0] - d[4]
    t13 = d[2] + d[6]
    t12 = mul(d[2] - d[6], _IFAST["1_414"]) - t13
    t0, t3, t1, t2 = t10 + t13, t10 - t13, t11 + t12, t11 - t12
    z13, z10, z11, z12 = d[5] + d[3], d[5] - d[3], d[1] + d[7], d[1] - d[7]
    t7 = z11 + z13
    t11 = mul(z11 - z13, _IFAST["1_414"])
    z5 = mul(z10 + z12, _IFAST["1_847"])
    t10 = mul(z12, _IFAST["1_082"]) - z5
    t12 = mul(z10, -_IFAST["2_613"]) + z5
    t6 = t12 - t7
    t5 = t11 - t6
    t4 = t10 + t5
    out = [t0 + t7, t1 + t6, t2 + t5, t3 - t4, t3 + t4, t2 - t5, t1 - t6, t0 - t7]
    return out if first_pass else [v >> 5 for v in out]  # PASS1_BITS + 3, truncated


def _dct2(blocks: np.ndarray, one_d) -> np.ndarray:
    """Separable 2-D transform of (N, 8, 8) blocks: rows first (pass 1), then columns (pass 2)."""
    rows = one_d([blocks[:, :, k] for k in range(8)], True)
    blocks = np.stack(rows, axis=2)
    cols = one_d([blocks[:, k, :] for k in range(8)], False)
    return np.stack(cols, axis=1)


def _idct2(blocks: np.ndarray, one_d) -> np.ndarray:
    """Inverse: libjpeg's pass 1 runs down the columns, pass 2 along the rows."""
    cols = one_d([blocks[:, k, :] for k in range(8)], True)
    blocks = np.stack(cols, axis=1)
    rows = one_d([blocks[:, :, k] for k in range(8)], False)
    return np.stack(rows, axis=2)


def _quantize(coefficients: np.ndarray, table: np.ndarray) -> np.ndarray:
    """libjpeg-turbo's quantisation by reciprocal (jcdctmgr.c compute_reciprocal, 16-bit
    DCTELEM as in its SIMD builds): ((|x| + c) * r) >> s, sign restored."""
    divisor = table.astype(np.int64) * 8  # the islow DCT output is scaled up by 8
    bits = np.floor(np.log2(divisor)).astype(np.int64)
    shift = 16 + bits
    reciprocal, remainder = np.divmod(np.left_shift(1, shift), divisor)
    correction = divisor // 2
    power_of_two = remainder == 0
    reciprocal = np.where(power_of_two, reciprocal >> 1, reciprocal + (remainder > divisor // 2))
    correction = correction + ((remainder != 0) & (remainder <= divisor // 2))
    shift = shift - power_of_two
    magnitude = ((np.abs(coefficients) + correction) * reciprocal) >> shift
    return np.where(coefficients < 0, -magnitude, magnitude)


def _pad_edge(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Replicate the last row and column out to height x width (libjpeg's expand_*_edge)."""
    return np.pad(plane, ((0, height - plane.shape[0]), (0, width - plane.shape[1])), mode="edge")


def _to_blocks(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape
    return plane.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)


def _from_blocks(blocks: np.ndarray, h: int, w: int) -> np.ndarray:
    return blocks.reshape(h // 8, w // 8, 8, 8).transpose(0, 2, 1, 3).reshape(h, w)


def _rgb_to_ycc(rgb: np.ndarray):
    """jccolor.c rgb_ycc_convert: 16-bit fixed point; Cb/Cr round with 0.5 - epsilon."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    half, offset = 1 << 15, 128 << 16
    y = (_fix(0.299, 16) * r + _fix(0.587, 16) * g + _fix(0.114, 16) * b + half) >> 16
    cb = (-_fix(0.16874, 16) * r - _fix(0.33126, 16) * g + _fix(0.5, 16) * b + offset + half - 1) >> 16
    cr = (_fix(0.5, 16) * r - _fix(0.41869, 16) * g - _fix(0.08131, 16) * b + offset + half - 1) >> 16
    return y, cb, cr


def _ycc_to_rgb(y, cb, cr) -> np.ndarray:
    """jdcolor.c ycc_rgb_convert with its rounded lookup tables."""
    half = 1 << 15
    cb, cr = cb - 128, cr - 128
    r = y + ((_fix(1.402, 16) * cr + half) >> 16)
    g = y + ((-_fix(0.34414, 16) * cb + half - _fix(0.71414, 16) * cr) >> 16)
    b = y + ((_fix(1.772, 16) * cb + half) >> 16)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def _downsample_2x2(plane: np.ndarray) -> np.ndarray:
    """jcsample.c h2v2_downsample: 2x2 sums, bias alternating 1, 2 along each row."""
    h, w = plane.shape
    sums = plane.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))
    bias = np.where(np.arange(w // 2) % 2 == 0, 1, 2)
    return (sums + bias) >> 2


def _upsample_2x2(plane: np.ndarray) -> np.ndarray:
    """jdsample.c h2v2_fancy_upsample: triangle filter (3/4, 1/4 per axis), edges replicated,
    rounding +8 for left outputs and +7 for right ones, as libjpeg alternates. Planes two
    samples wide or less get plain replication (h2v2_upsample), as libjpeg does."""
    if plane.shape[1] <= 2:
        return plane.repeat(2, axis=0).repeat(2, axis=1)
    above = np.concatenate([plane[:1], plane[:-1]])
    below = np.concatenate([plane[1:], plane[-1:]])
    out = []
    for near in (3 * plane + above, 3 * plane + below):  # upper output row, lower output row
        left = np.concatenate([near[:, :1], near[:, :-1]], axis=1)
        right = np.concatenate([near[:, 1:], near[:, -1:]], axis=1)
        pair = np.stack([(3 * near + left + 8) >> 4, (3 * near + right + 7) >> 4], axis=2)
        out.append(pair.reshape(near.shape[0], -1))
    return np.stack(out, axis=1).reshape(2 * plane.shape[0], -1)


def _range_limit(samples: np.ndarray) -> np.ndarray:
    """IDCT output + 128 through libjpeg's range-limit table (wraps beyond +-512, else clamps)."""
    wrapped = ((samples + 512) & 1023) - 512
    return np.clip(wrapped + 128, 0, 255)


def _code_plane(plane: np.ndarray, table: np.ndarray, idct: str, h: int, w: int) -> np.ndarray:
    """One component: padded to whole blocks, DCT, quantise, dequantise, IDCT; cropped to h x w."""
    padded = _pad_edge(plane, -(-plane.shape[0] // 8) * 8, -(-plane.shape[1] // 8) * 8)
    coefficients = _quantize(_dct2(_to_blocks(padded) - 128, _fdct_islow_1d), table)
    if idct == "ifast":
        multipliers = _descale(table * _AAN_SCALES, 12)  # jddctmgr.c: CONST_BITS 14 - IFAST_SCALE_BITS 2
        samples = _idct2(coefficients * multipliers, _idct_ifast_1d)
    else:
        samples = _idct2(coefficients * table, _idct_islow_1d)
    return _from_blocks(_range_limit(samples), *padded.shape)[:h, :w]


def jpeg_roundtrip(image: np.ndarray, quality: int = 95, idct: str = "ifast") -> np.ndarray:
    """Encode as baseline JPEG (4:2:0) and decode back, pixel-exact with libjpeg-turbo.

    Defaults follow OpenVLA's `tf.image.encode_jpeg(img)` (quality 95, chroma downsampled)
    then `tf.io.decode_image(...)` (TF decodes with the IFAST integer IDCT and fancy
    upsampling). idct="islow" decodes as libjpeg's default (Pillow, OpenCV, and TF with
    dct_method="INTEGER_ACCURATE"). HxWx3 uint8 in and out.
    """
    if idct not in ("ifast", "islow"):
        raise ValueError(f"idct must be 'ifast' or 'islow', not {idct!r}")
    image = _check_rgb(image)
    h, w = image.shape[:2]
    y, cb, cr = _rgb_to_ycc(image)
    luma = _code_plane(y, quant_table(_LUMA_QUANT, quality), idct, h, w)
    # Chroma: the encoder replicates edges to an even row count and whole 16-pixel MCU columns,
    # then averages 2x2; the decoder keeps ceil(h/2) x ceil(w/2) samples and upsamples those.
    ch, cw = -(-h // 2), -(-w // 2)
    chroma_table = quant_table(_CHROMA_QUANT, quality)
    planes = []
    for plane in (cb, cr):
        small = _downsample_2x2(_pad_edge(plane, 2 * ch, 16 * -(-w // 16)))
        planes.append(_upsample_2x2(_code_plane(small, chroma_table, idct, ch, cw))[:h, :w])
    return _ycc_to_rgb(luma, *planes)


# -- the named paths --------------------------------------------------------------------------

def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    return image


def _hw(size: Size) -> tuple:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def openvla(image: np.ndarray, size: Size = 224) -> np.ndarray:
    """OpenVLA's `resize_image` (openvla/openvla experiments/robot/libero/libero_utils.py:33-47,
    the same at experiments/robot/bridge/bridgev2_utils.py:101-115; size 224 from
    robot_utils.py:50-60): `tf.image.encode_jpeg` at its defaults, `tf.io.decode_image`,
    `tf.image.resize(..., method="lanczos3", antialias=True)` straight on the decoded uint8
    image, then `tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)`. The 180-degree
    flip of LIBERO frames (get_libero_image) comes before, in the adapter."""
    return tf_round_clip_uint8(tf_resize_lanczos3(jpeg_roundtrip(image), *_hw(size)))


def dlimp_lanczos3(image: np.ndarray, size: Size = 224) -> np.ndarray:
    """dlimp's `resize_image` (kvablack/dlimp dlimp/utils.py:12-17), as the RLDS loaders of
    Octo, OpenVLA and NORA training use it (NORA training/datasets/rlds/obs_transforms.py:75)
    and SimplerEnv's Octo adapter does (simpler_env/policies/octo/octo_model.py:88-96): TF
    lanczos3 with antialias on the uint8 image, round half to even, clip, uint8. No JPEG."""
    return tf_round_clip_uint8(tf_resize_lanczos3(_check_rgb(image), *_hw(size)))


def qwen_smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 4 * 28 * 28,
                      max_pixels: int = 16384 * 28 * 28) -> tuple:
    """qwen_vl_utils.smart_resize: sides rounded to multiples of `factor` (Python's round,
    half to even), then scaled into [min_pixels, max_pixels] keeping the aspect ratio."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be below 200, got {max(height, width) / min(height, width)}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar, w_bar = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen_bicubic(image: np.ndarray, size: Size = 224) -> np.ndarray:
    """NORA / NORA-LONG: an image message with resized_height/width = size through
    qwen_vl_utils.process_vision_info (declare-lab/nora inference/nora.py:155-181, the same in
    experiments/libero/nora_utils.py:242-268): fetch_image converts to RGB, smart_resize(h, w,
    factor=28) picks the target and `image.resize((w, h))` resamples with Pillow's default
    filter for RGB, BICUBIC (qwen-vl-utils 0.0.14 vision_process.py:93-141)."""
    from PIL import Image

    height, width = qwen_smart_resize(*_hw(size))
    pil = Image.fromarray(_check_rgb(image)).convert("RGB")
    return np.asarray(pil.resize((width, height), resample=Image.Resampling.BICUBIC))


def cv2_area(image: np.ndarray, size: Size = 224) -> np.ndarray:
    """`cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)`, as SpatialVLA's SimplerEnv
    adapter (simpler-env/SimplerEnv 0936b9e simpler_env/policies/spatialvla/spatialvla_model.py:187-189)."""
    try:
        import cv2
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("the cv2_area image path needs OpenCV (pip install opencv-python-headless)") from error
    height, width = _hw(size)
    return cv2.resize(_check_rgb(image), (width, height), interpolation=cv2.INTER_AREA)


def simpler_openvla(image: np.ndarray, size: Size = 224) -> np.ndarray:
    """SimplerEnv's OpenVLA adapter (simpler-env/SimplerEnv 2905379
    simpler_env/policies/openvla/openvla_model.py:147-149): cv2 INTER_AREA, not OpenVLA's own
    JPEG + lanczos3 path. Same as cv2_area; its own name so runs record the reference."""
    return cv2_area(image, size)


def pil_lanczos(image: np.ndarray, size: Size = 224) -> np.ndarray:
    """Pillow LANCZOS (evalkit's resize before these named paths existed)."""
    from PIL import Image

    height, width = _hw(size)
    return np.asarray(Image.fromarray(_check_rgb(image)).resize((width, height), Image.Resampling.LANCZOS))


def none(image: np.ndarray, size: Size = 224) -> np.ndarray:
    """The frame as given (size ignored): for policies that take frames at their own size."""
    return np.asarray(image)


IMAGE_PATHS: dict[str, Callable[[np.ndarray, Size], np.ndarray]] = {
    "openvla": openvla,
    "dlimp_lanczos3": dlimp_lanczos3,
    "qwen_bicubic": qwen_bicubic,
    "cv2_area": cv2_area,
    "simpler_openvla": simpler_openvla,
    "pil_lanczos": pil_lanczos,
    "none": none,
}


def prepare(path_name: str, image: np.ndarray, size: Size = 224) -> np.ndarray:
    """Apply the named path to an HxWx3 uint8 frame; `size` is 224 or (height, width)."""
    try:
        path = IMAGE_PATHS[path_name]
    except KeyError:
        raise ValueError(f"unknown image path {path_name!r}; known: {', '.join(IMAGE_PATHS)}") from None
    return path(image, size)


# -- a deterministic test frame ---------------------------------------------------------------

def synthetic_frame(height: int = 256, width: int = 256, seed: int = 0) -> np.ndarray:
    """A LIBERO-like HxWx3 uint8 frame for checks and benchmarks: wall gradient, a wood-grain
    table with a little pixel noise, hard-edged objects, a thin dark line and a saturated highlight.
    Integer hashing (not numpy's RNG streams) keeps it identical across numpy versions."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    v, u = y / height, x / width
    wall = np.stack([180 + 40 * u, 190 + 30 * v, 210 - 20 * u], axis=-1)
    table = np.stack([140 + 30 * np.sin(40 * u + 8 * v), 95 + 20 * np.sin(40 * u + 8 * v), 60 + 0 * u], axis=-1)
    frame = np.where((v > 0.45)[..., None], table, wall)
    bowl = (u - 0.3) ** 2 + ((v - 0.62) * 1.4) ** 2 < 0.012
    frame[bowl] = [235, 235, 240]
    frame[(np.abs(u - 0.68) < 0.1) & (np.abs(v - 0.7) < 0.07)] = [30, 90, 200]
    frame[(np.abs(u - 0.55) < 0.03) & (np.abs(v - 0.35) < 0.15)] = [255, 255, 255]  # highlight
    frame[np.abs((u - 0.5) - 0.6 * (v - 0.1)) < 0.006] = [10, 10, 12]  # robot arm edge, 1-2 px
    frame[(np.abs(u - 0.12) < 0.05) & (np.abs(v - 0.85) < 0.05)] = [0, 0, 0]
    yi, xi = np.mgrid[0:height, 0:width].astype(np.uint32)
    noise = []
    for c in range(3):
        salt = np.uint32(((c + 1) * 83492791 + seed * 2654435761) % 2**32)
        h = (yi * np.uint32(73856093)) ^ (xi * np.uint32(19349663)) ^ salt
        h = (h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
        h = h ^ (h >> np.uint32(16))
        noise.append((h % np.uint32(5)).astype(np.float64) - 2.0)  # -2..2 levels
    noise = np.where((v > 0.45)[..., None], np.stack(noise, axis=-1), 0.0)  # render noise on the table only
    return np.clip(np.round(frame + noise), 0, 255).astype(np.uint8)


def frame_digest(image: np.ndarray) -> str:
    """sha256 of an image's shape and bytes (golden files record their inputs this way)."""
    image = np.ascontiguousarray(image)
    return hashlib.sha256(repr(image.shape).encode() + image.tobytes()).hexdigest()


def image_path_for(suite, spec: PolicySpec) -> str:
    """The named image path for a policy on a suite's robot (see PolicySpec.image_path)."""
    if spec.image_path != "reference":
        return spec.image_path
    paths = dict(spec.image_paths)
    return paths.get(suite.robot, paths.get("*", "none"))


class ImagePreparer:
    """Applies a named image path (evalkit.core.images) to every camera frame of an observation."""

    def __init__(self, path: str, size: int):
        if path not in IMAGE_PATHS:
            raise ValueError(f"unknown image path {path!r}; known: {', '.join(sorted(IMAGE_PATHS))}")
        self.path, self.size, self.function = path, size, IMAGE_PATHS[path]

    def __call__(self, obs) -> None:
        if self.path != "none":
            obs.images = {camera: self.function(image, self.size) for camera, image in obs.images.items()}
