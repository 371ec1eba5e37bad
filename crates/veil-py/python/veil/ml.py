"""Encrypted inference of ONNX models: the client encrypts, the server runs the model on
ciphertexts without seeing the input, only the client reads the prediction::

    import numpy as np
    import veil.ml as ml
    import veil.he as he

    plan = ml.compile("mlp.onnx", input_range=(0, 1))     # server: the model, compiled
    client_plan = plan.client_plan()                       # what the client gets: no weights

    ctx = client_plan.keygen()                             # client: keys (secret stays here)
    query = client_plan.encrypt(ctx, images).to_bytes()    # images: (n, 64) array
    public = ctx.serialize()                               # parameters + public keys

    server_ctx = he.context_from(public)                   # server: cannot decrypt
    answer = plan.evaluate(ml.Encrypted.from_bytes(server_ctx, query)).to_bytes()

    logits = client_plan.decrypt(ml.Encrypted.from_bytes(ctx, answer))   # (n, 10)

The compiler chooses the packing, ring degree, modulus chain and scale under the 128-bit
table, the polynomial approximations of activations over the declared input range, and only
the rotation keys the plan needs (see ``docs/ml.md``). Decryption floods noise so outputs may
be shared.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple, Union

import numpy as np

from . import he as _he_module
from ._native import MlError
from ._native import ml as _ml

__all__ = ["compile", "Plan", "Encrypted", "MlError"]


def _samples(samples, width: int) -> Tuple[bytes, int]:
    try:
        arr = np.ascontiguousarray(samples, dtype="<f8")
    except (TypeError, ValueError) as e:
        raise MlError(f"samples must be numbers: {e}") from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != width or arr.shape[0] == 0:
        raise MlError(f"samples must have shape (n, {width}), got {np.shape(samples)}")
    if not np.all(np.isfinite(arr)):
        raise MlError("samples must be finite")
    return arr.tobytes(), arr.shape[0]


class Encrypted:
    """Encrypted samples as they travel between client and server."""

    __slots__ = ("_e",)

    def __init__(self, native):
        self._e = native

    def to_bytes(self) -> bytes:
        """The ciphertexts as bytes."""
        return self._e.to_bytes()

    @staticmethod
    def from_bytes(ctx: "_he_module.Context", data: bytes) -> "Encrypted":
        """Reads samples under ``ctx`` (the server's public context or the client's own)."""
        if not isinstance(ctx, _he_module.Context):
            raise MlError(f"expected a veil.he.Context, got {type(ctx).__name__}")
        return Encrypted(_ml.Encrypted.from_bytes(ctx._native(), bytes(data)))

    def __len__(self) -> int:
        return len(self._e)

    def __repr__(self) -> str:
        return f"Encrypted(samples={len(self)})"


class Plan:
    """A compiled model. The server keeps the plan with weights; clients get
    :meth:`client_plan`."""

    __slots__ = ("_p",)

    def __init__(self, native):
        self._p = native

    # -- files ------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The plan as bytes (versioned and validated when read back)."""
        return self._p.to_bytes()

    @staticmethod
    def from_bytes(data: bytes) -> "Plan":
        """Reads a plan; malformed bytes are refused with :class:`MlError`."""
        return Plan(_ml.Plan.from_bytes(bytes(data)))

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Writes the plan to a file."""
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @staticmethod
    def load(path: Union[str, os.PathLike]) -> "Plan":
        """Reads a plan from a file."""
        with open(path, "rb") as f:
            return Plan.from_bytes(f.read())

    def client_plan(self) -> "Plan":
        """The plan without the model's weights, for clients."""
        return Plan(self._p.client_plan())

    # -- client -----------------------------------------------------------------------------
    def keygen(self) -> "_he_module.Context":
        """A fresh secret key and exactly the keys this plan needs."""
        return _he_module.Context._wrap(self._p.keygen())

    def encrypt(self, ctx: "_he_module.Context", samples) -> Encrypted:
        """Encrypts one sample (1-D) or many (2-D, one per row)."""
        if not isinstance(ctx, _he_module.Context):
            raise MlError(f"expected a veil.he.Context, got {type(ctx).__name__}")
        data, rows = _samples(samples, self.input_len)
        return Encrypted(self._p.encrypt(ctx._native(), data, rows))

    def decrypt_with_flood_std(self, answer: Encrypted) -> Tuple[np.ndarray, float]:
        """``(outputs, flood_std)``: one row per sample, and the standard deviation of the
        noise flooding added to each value."""
        data, rows, cols, flood = self._p.decrypt(answer._e)
        return np.frombuffer(data, dtype="<f8").reshape(rows, cols).copy(), flood

    def decrypt(self, answer: Encrypted) -> np.ndarray:
        """The outputs, one row per sample (logits, or what the model's tail computes)."""
        return self.decrypt_with_flood_std(answer)[0]

    # -- server -----------------------------------------------------------------------------
    def evaluate(self, query: Encrypted) -> Encrypted:
        """Runs the model on encrypted samples (needs only public keys)."""
        if not isinstance(query, Encrypted):
            raise MlError(f"expected veil.ml.Encrypted, got {type(query).__name__}")
        return Encrypted(self._p.evaluate(query._e))

    def evaluate_plain(self, samples) -> np.ndarray:
        """What the plan computes, without encryption (one row per sample)."""
        data, rows = _samples(samples, self.input_len)
        flat = np.frombuffer(data, dtype="<f8").reshape(rows, self.input_len)
        return np.stack([np.frombuffer(self._p.evaluate_plain(r.tobytes()), dtype="<f8")
                         for r in flat])

    def predict(self, samples) -> np.ndarray:
        """The whole round trip on this machine, client and server split as in production:
        keys, encryption, evaluation under the public context only, flooded decryption."""
        client = self.client_plan()
        ctx = client.keygen()
        server_ctx = _he_module.context_from(ctx.serialize())
        query = Encrypted.from_bytes(server_ctx, client.encrypt(ctx, samples).to_bytes())
        answer = Encrypted.from_bytes(ctx, self.evaluate(query).to_bytes())
        return client.decrypt(answer)

    # -- facts ------------------------------------------------------------------------------
    @property
    def packing(self) -> str:
        """``"single"`` (one sample per ciphertext) or ``"batch"``."""
        return self._p.packing

    @property
    def input_len(self) -> int:
        """Values in one sample."""
        return self._p.input_len

    @property
    def output_len(self) -> int:
        """Values in one output."""
        return self._p.output_len

    @property
    def depth(self) -> int:
        """Multiplicative depth."""
        return self._p.depth

    @property
    def samples_per_evaluation(self) -> int:
        """Samples one evaluation handles."""
        return self._p.samples_per_evaluation

    @property
    def poly_modulus_degree(self) -> int:
        """Ring degree N."""
        return self._p.poly_modulus_degree

    @property
    def coeff_mod_bit_sizes(self) -> list:
        """Modulus chain (bit sizes, special primes last)."""
        return self._p.coeff_mod_bit_sizes

    @property
    def rotation_steps(self) -> list:
        """Rotations the plan needs keys for."""
        return self._p.rotation_steps

    def __repr__(self) -> str:
        return repr(self._p)


def compile(model: Union[str, os.PathLike, bytes], *, input_range=(0.0, 1.0),
            packing: str = "auto", precision: float = 0.125,
            calibration: Optional[np.ndarray] = None) -> Plan:
    """Compiles an ONNX model (a path or its bytes) for encrypted inference.

    ``packing``: ``"single"`` (latency), ``"batch"`` (throughput) or ``"auto"`` (single; batch
    for tree ensembles). ``input_range``: every input value lies in it. ``calibration``:
    representative samples (n × input_len) that measure the activations' ranges instead.
    ``precision``: target standard deviation of the outputs' error. Unsupported operators
    raise :class:`MlError` naming the node."""
    data = model if isinstance(model, (bytes, bytearray)) else open(model, "rb").read()
    lo, hi = (float(v) for v in input_range)
    cal = None
    if calibration is not None:
        arr = np.ascontiguousarray(calibration, dtype="<f8")
        if arr.ndim != 2:
            raise MlError(f"calibration must be (n, input_len), got shape {arr.shape}")
        cal = (arr.tobytes(), arr.shape[0], arr.shape[1])
    return Plan(_ml.Plan.compile(bytes(data), lo, hi, packing, float(precision), cal))
