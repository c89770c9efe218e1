"""FAST+ codec: transform details, round trip through a locally trained BPE, failure reporting."""

import numpy as np
import pytest

from policies.nora.fast import FastCodec, dct_matrix

pytest.importorskip("tokenizers")


def smooth_chunks(n, horizon, dim=7, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, horizon)[:, None]
    return [np.clip(rng.uniform(-0.8, 0.8, dim) + 0.3 * np.sin(3 * t + rng.uniform(0, 6, dim)), -1, 1)
            for _ in range(n)]


@pytest.fixture(scope="module", params=[1, 5])
def codec_and_data(request, tmp_path_factory):
    horizon = request.param
    chunks = smooth_chunks(300, horizon)
    codec = FastCodec.fit(chunks, scale=10, vocab_size=400)
    folder = tmp_path_factory.mktemp(f"fast{horizon}")
    codec.save_pretrained(folder)
    return FastCodec.from_pretrained(folder), smooth_chunks(20, horizon, seed=1)


def test_dct_matrix_is_orthonormal_dct_ii():
    matrix = dct_matrix(5)
    assert np.allclose(matrix @ matrix.T, np.eye(5))
    scipy_fft = pytest.importorskip("scipy.fft")
    x = np.random.default_rng(0).normal(size=(5, 3))
    assert np.allclose(matrix @ x, scipy_fft.dct(x, axis=0, norm="ortho"))


def test_string_is_time_major_scaled_and_shifted():
    codec = FastCodec(None, scale=10, min_token=-354)
    actions = np.array([[0.5, -0.2], [0.5, -0.2]])  # constant over time: only frequency 0 is non-zero
    # DC coefficient = sqrt(2) * value; x10, rounded: 7.07 -> 7, -2.83 -> -3; frequency 1: 0
    assert [ord(c) - 354 for c in codec.to_string(actions)] == [7, -3, 0, 0]


def test_round_trip_within_quantisation_error(codec_and_data):
    codec, chunks = codec_and_data
    horizon = chunks[0].shape[0]
    bound = 0.5 / codec.scale * np.sqrt(horizon)  # per value: half a quantisation step through an orthonormal map
    for chunk in chunks:
        ids = codec.encode(chunk)
        decoded = codec.decode(ids)
        assert decoded.ok, decoded.error
        assert decoded.actions.shape == (horizon, 7)
        assert np.abs(decoded.actions - chunk).max() <= bound + 1e-12


def test_bpe_compresses_longer_chunks():
    chunks = smooth_chunks(300, 5)
    codec = FastCodec.fit(chunks, scale=10, vocab_size=400)
    assert np.mean([len(codec.encode(c)) for c in chunks[:50]]) < 35  # fewer tokens than 35 coefficients


def test_failures_are_reported_not_zeroed(codec_and_data):
    codec, chunks = codec_and_data
    horizon = chunks[0].shape[0]
    ids = codec.encode(chunks[0])
    truncated = codec.decode(ids[:-1])
    assert not truncated.ok and truncated.actions is None and ("coefficients" in truncated.error or "byte" in truncated.error)
    assert "outside the FAST vocabulary" in codec.decode([10**6]).error
    assert not codec.decode([]).ok
    wrong_shape = codec.decode(ids, time_horizon=horizon + 1)
    assert not wrong_shape.ok and f"({horizon + 1}, 7)" in wrong_shape.error


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="processor_config.json"):
        FastCodec.from_pretrained(tmp_path)


def test_nora_decode_recovers_a_chunk_placed_after_the_prompt(codec_and_data):
    from policies.nora.actions import NORA_FIRST_ACTION_ID, decode_actions
    from policies.normalization import read_action_stats, unnormalize

    codec, chunks = codec_and_data
    horizon = chunks[0].shape[0]
    stats = read_action_stats({"libero_spatial": {"action": {
        "q01": [-0.9, -0.8, -0.9, -0.1, -0.2, -0.3, -1], "q99": [0.9, 0.9, 0.9, 0.1, 0.2, 0.3, 1],
        "mask": [True] * 6 + [False]}}}, "libero_spatial")
    prompt = list(range(100, 164))  # stand-in for the chat prompt and 64 image tokens
    eos = 151645  # <|im_end|>, below the action range
    for chunk in chunks[:5]:
        generated = prompt + [NORA_FIRST_ACTION_ID + i for i in codec.encode(chunk)] + [eos]
        for respect_mask in (False, True):
            out = decode_actions(generated, codec, stats, horizon, respect_mask=respect_mask)
            assert out.ok, out.error
            expected = unnormalize(chunk, stats, respect_mask)
            step = 0.5 / codec.scale * np.sqrt(horizon) * 0.5 * (stats.q99 - stats.q01)
            step = np.where(stats.mask | (not respect_mask), step, 0.5 / codec.scale * np.sqrt(horizon))
            assert np.all(np.abs(out.actions - expected) <= step + 1e-12)
    truncated = decode_actions(prompt + [NORA_FIRST_ACTION_ID + codec.encode(chunks[0])[0]], codec, stats, horizon)
    assert horizon == 1 or not truncated.ok
