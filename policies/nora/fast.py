"""FAST+ action codec (DCT + byte-level BPE), written from the published algorithm.

Encode a chunk of normalised actions (T, D), values about [-1, 1]:
  1. orthonormal DCT-II of each dimension over time;
  2. multiply by `scale` and round to integers;
  3. flatten time-major (all D coefficients of frequency 0, then of frequency 1, ...);
  4. subtract `min_token` so every value is >= 0 and map each value v to the character chr(v);
  5. byte-level BPE over that string gives the token ids.
Decode inverts it. Unlike the reference implementation, which returns zeros on any
failure, a failed or truncated decode is reported (`Decoded.ok`, `Decoded.error`).

Reads a checkpoint's `tokenizer.json` (the BPE) and `processor_config.json` (scale,
min_token, vocab_size, and optionally time_horizon and action_dim). Needs only numpy and
the `tokenizers` library; no remote code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

REPLACEMENT_CHAR = 0xFFFD  # what a byte-level decoder emits for an incomplete UTF-8 sequence


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix C (n x n): coefficients = C @ signal, signal = C.T @ coefficients."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * t + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    return matrix


@dataclass
class Decoded:
    actions: Optional[np.ndarray]  # (T, D) normalised actions, or None when decoding failed
    ok: bool
    error: str = ""


class FastCodec:
    def __init__(self, tokenizer, scale: float = 10.0, min_token: int = 0, vocab_size: int = 2048,
                 time_horizon: Optional[int] = None, action_dim: Optional[int] = None):
        self.tokenizer = tokenizer  # a tokenizers.Tokenizer (byte-level BPE)
        self.scale = float(scale)
        self.min_token = int(min_token)
        self.vocab_size = int(vocab_size)
        self.time_horizon = time_horizon
        self.action_dim = action_dim

    # -- the transform ------------------------------------------------------

    def quantize(self, actions: np.ndarray) -> np.ndarray:
        """Steps 1-3: (T, D) actions -> integer DCT coefficients, flattened time-major."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2:
            raise ValueError(f"FAST encodes one chunk of shape (T, D); got shape {actions.shape}")
        return np.rint(dct_matrix(len(actions)) @ actions * self.scale).astype(np.int64).reshape(-1)

    def to_string(self, actions: np.ndarray) -> str:
        """Steps 1-4: (T, D) actions -> the character string the BPE encodes."""
        shifted = self.quantize(actions) - self.min_token
        if shifted.min() < 0:
            raise ValueError(f"a DCT coefficient ({shifted.min() + self.min_token}) lies below min_token "
                             f"{self.min_token}: are the actions normalised to [-1, 1]?")
        return "".join(map(chr, shifted))

    def from_string(self, text: str, time_horizon: int, action_dim: int) -> Decoded:
        """Steps 4-1 inverted; reports strings that cannot be a (time_horizon, action_dim) chunk."""
        codes = np.array([ord(c) for c in text], dtype=np.int64)
        if (codes == REPLACEMENT_CHAR).any():
            return Decoded(None, False, "token ids decode to an incomplete byte sequence (truncated generation?)")
        if codes.size != time_horizon * action_dim:
            return Decoded(None, False, f"decoded {codes.size} DCT coefficients; a ({time_horizon}, {action_dim}) "
                                        f"chunk needs {time_horizon * action_dim}")
        coefficients = (codes + self.min_token).reshape(time_horizon, action_dim) / self.scale
        return Decoded(dct_matrix(time_horizon).T @ coefficients, True)

    # -- with the BPE -------------------------------------------------------

    def encode(self, actions: np.ndarray) -> list[int]:
        return self.tokenizer.encode(self.to_string(actions)).ids

    def decode(self, token_ids: Sequence[int], time_horizon: Optional[int] = None,
               action_dim: Optional[int] = None) -> Decoded:
        horizon = time_horizon or self.time_horizon
        dim = action_dim or self.action_dim
        if not horizon or not dim:
            raise ValueError("FAST decode needs time_horizon and action_dim (arguments or processor_config.json)")
        ids = [int(i) for i in token_ids]
        out_of_range = [i for i in ids if not 0 <= i < self.tokenizer.get_vocab_size()]
        if out_of_range:
            return Decoded(None, False, f"token ids outside the FAST vocabulary: {out_of_range[:5]}")
        if not ids:
            return Decoded(None, False, "no action tokens to decode")
        return self.from_string(self.tokenizer.decode(ids), horizon, dim)

    # -- files --------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "FastCodec":
        """From a folder or a hub id (e.g. physical-intelligence/fast) holding the two files."""
        from tokenizers import Tokenizer

        from policies.hub import checkpoint_file

        config_file = checkpoint_file(path, "processor_config.json")
        config = json.loads(config_file.read_text())
        missing = [k for k in ("scale", "min_token") if k not in config]
        if missing:
            raise ValueError(f"{config_file} lacks {missing}")
        tokenizer = Tokenizer.from_file(str(checkpoint_file(path, "tokenizer.json")))
        return cls(tokenizer, config["scale"], config["min_token"], config.get("vocab_size", tokenizer.get_vocab_size()),
                   config.get("time_horizon"), config.get("action_dim"))

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path / "tokenizer.json"))
        config = {"scale": self.scale, "min_token": self.min_token, "vocab_size": self.vocab_size,
                  "time_horizon": self.time_horizon, "action_dim": self.action_dim,
                  "processor_class": "UniversalActionProcessor"}
        (path / "processor_config.json").write_text(json.dumps(config, indent=2))

    @classmethod
    def fit(cls, chunks: Iterable[np.ndarray], scale: float = 10.0, vocab_size: int = 1024) -> "FastCodec":
        """Train a byte-level BPE over the chunks' DCT strings (tests build tiny codecs this way)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        chunks = [np.asarray(c, dtype=np.float64) for c in chunks]
        values = np.concatenate([cls(None, scale).quantize(c) for c in chunks])
        codec = cls(None, scale, int(values.min()), vocab_size, chunks[0].shape[0], chunks[0].shape[1])
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, initial_alphabet=alphabet,
                                      special_tokens=[], max_token_length=10000, show_progress=False)
        tokenizer.train_from_iterator((codec.to_string(c) for c in chunks), trainer=trainer)
        codec.tokenizer = tokenizer
        codec.vocab_size = tokenizer.get_vocab_size()
        return codec

