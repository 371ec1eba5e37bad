"""Homomorphic encryption — CKKS (approximate reals) and BFV (exact integers) — with a
TenSEAL-like API.

A TenSEAL tutorial ports by renaming the import::

    import veil.he as ts   # instead of: import tenseal as ts

    ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=8192,
                     coeff_mod_bit_sizes=[60, 40, 40, 60])
    ctx.global_scale = 2 ** 40
    ctx.generate_galois_keys()
    v = ts.ckks_vector(ctx, [1.0, 2.0, 3.0])
    (v * v + 1).decrypt()          # numpy array ≈ [2, 5, 10]

BFV as TenSEAL's ``bfv_vector``::

    ctx = ts.context(ts.SCHEME_TYPE.BFV, poly_modulus_degree=8192, plain_modulus=1032193)
    v = ts.bfv_vector(ctx, [1, 2, 3])
    (v * v + 1).decrypt()          # [2, 5, 10], exactly

Differences from TenSEAL, all on the side of safety:

- parameters below 128-bit security are refused unless
  ``insecure_allow_below_128_bit_security=True`` is passed by name;
- :meth:`CKKSVector.decrypt` adds noise flooding (30-bit statistical security by default) so a
  decrypted result can be shared without leaking the secret key; the key holder who keeps a
  result to itself may use :meth:`CKKSVector.decrypt_unflooded_for_key_holder_only`;
- keys are generated on first use (after ``global_scale`` is set), with the power-of-two
  rotation keys, so ``generate_galois_keys()`` and ``generate_relin_keys()`` are no-ops.
"""

from __future__ import annotations

import enum
import struct
from math import isfinite as _isfinite
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from ._native import HeError
from ._native import he as _he

__all__ = [
    "SCHEME_TYPE",
    "PRESETS",
    "Context",
    "CKKSVector",
    "context",
    "context_from",
    "context_from_preset",
    "ckks_vector",
    "ckks_vector_from",
    "BFVContext",
    "BFVVector",
    "bfv_vector",
    "bfv_vector_from",
    "bfv_context_from",
    "HeError",
]

#: Names of the ready-made 128-bit parameter sets (:func:`context_from_preset`).
PRESETS = tuple(_he.PRESETS)

_CONTEXT_MAGIC = b"VEILPYC1"


class SCHEME_TYPE(enum.Enum):
    """The scheme of a context (TenSEAL's ``ts.SCHEME_TYPE``): CKKS (approximate reals) or
    BFV (exact integers modulo ``plain_modulus``)."""

    CKKS = "ckks"
    BFV = "bfv"


def _f64(values, what: str = "values") -> bytes:
    try:
        arr = np.ascontiguousarray(values, dtype="<f8")
    except (TypeError, ValueError) as e:
        raise HeError(f"{what} must be numbers: {e}") from None
    if arr.ndim != 1:
        raise HeError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise HeError(f"{what} must be finite (no NaN or infinity)")
    return arr.tobytes()


def _array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f8").copy()


class Context:
    """Parameters and keys. The data owner's context holds the secret key; the computing
    party gets :meth:`make_context_public` / ``serialize(save_secret_key=False)``."""

    def __init__(self, *, poly_modulus_degree: int = 8192,
                 coeff_mod_bit_sizes: Sequence[int] = (60, 40, 40, 60),
                 global_scale: Optional[float] = None,
                 rotation_steps: Iterable[int] = (),
                 special_primes: int = 1,
                 flooding_bits: int = 30,
                 insecure_allow_below_128_bit_security: bool = False,
                 _inner=None):
        self._inner = _inner
        self._degree = int(poly_modulus_degree)
        self._bits = [int(b) for b in coeff_mod_bit_sizes]
        self._steps = [int(s) for s in rotation_steps]
        self._special = int(special_primes)
        self._flooding = int(flooding_bits)
        self._insecure = bool(insecure_allow_below_128_bit_security)
        self._scale_bits: Optional[float] = None
        if global_scale is not None:
            self.global_scale = global_scale
        if _inner is not None:
            self._scale_bits = _inner.scale_bits

    # -- keys -----------------------------------------------------------------------------
    def _native(self):
        """The native context, generating the keys on first use."""
        if self._inner is None:
            scale = self._scale_bits
            if scale is None:
                middle = self._bits[1:-1] or self._bits
                scale = float(middle[0])
            self._inner = _he.Context(
                self._degree,
                self._bits,
                scale,
                self._special,
                self._steps,
                self._flooding,
                self._insecure,
            )
            self._scale_bits = self._inner.scale_bits
        return self._inner

    def generate_galois_keys(self) -> None:
        """Kept for TenSEAL code: Veil makes the power-of-two rotation keys with the context."""
        self._native()

    def generate_relin_keys(self) -> None:
        """Kept for TenSEAL code: Veil makes the relinearization key with the context."""
        self._native()

    @property
    def global_scale(self) -> float:
        """The scale fresh vectors are encoded at (a power of two)."""
        if self._scale_bits is None:
            middle = self._bits[1:-1] or self._bits
            return float(2.0 ** middle[0])
        return float(2.0 ** self._scale_bits)

    @global_scale.setter
    def global_scale(self, value: float) -> None:
        value = float(value)
        if not (value > 1.0 and np.isfinite(value)):
            raise HeError(f"global_scale must be a finite number above 1, got {value}")
        bits = float(np.log2(value))
        if self._inner is not None and abs(bits - self._inner.scale_bits) > 1e-9:
            raise HeError(
                "global_scale is fixed once keys exist (set it before the first encryption)"
            )
        self._scale_bits = bits

    # -- public / private -----------------------------------------------------------------
    def is_private(self) -> bool:
        """Whether this context holds the secret key."""
        return self._native().is_private()

    def is_public(self) -> bool:
        """Whether this context lacks the secret key."""
        return not self.is_private()

    def make_context_public(self) -> None:
        """Drops the secret key from this context (in place, as TenSEAL does). Vectors linked
        to it can no longer be decrypted through it."""
        self._inner = self._native().make_public()

    def public(self) -> "Context":
        """A copy of this context without the secret key."""
        return Context._wrap(self._native().make_public())

    # -- serialization --------------------------------------------------------------------
    def serialize(self, save_secret_key: bool = False) -> bytes:
        """The context as bytes: parameters and public keys, and the secret key only if
        ``save_secret_key`` (Python bytes cannot be wiped: keep such a copy briefly)."""
        inner = self._native()
        public = inner.public_bytes()
        secret = inner.secret_key_bytes() if save_secret_key else None
        if save_secret_key and secret is None:
            raise HeError("this context has no secret key to save")
        secret = secret or b""
        return (_CONTEXT_MAGIC + struct.pack("<Q", len(public)) + public
                + struct.pack("<Q", len(secret)) + secret)

    @staticmethod
    def _wrap(inner) -> "Context":
        return Context(poly_modulus_degree=inner.poly_modulus_degree,
                       coeff_mod_bit_sizes=inner.coeff_mod_bit_sizes,
                       flooding_bits=inner.flooding_bits, _inner=inner)

    # -- facts ----------------------------------------------------------------------------
    @property
    def poly_modulus_degree(self) -> int:
        """Ring degree N."""
        return self._degree

    @property
    def slots(self) -> int:
        """How many values one vector holds at most (N / 2)."""
        return self._degree // 2

    @property
    def coeff_mod_bit_sizes(self) -> list:
        """The modulus chain as bit sizes, special primes last."""
        return list(self._bits)

    @property
    def max_level(self) -> int:
        """Multiplications a fresh vector can take."""
        return self._native().max_level

    @property
    def galois_key_count(self) -> int:
        """How many rotation keys the context holds."""
        return self._native().galois_key_count

    @property
    def security(self) -> str:
        """``"128-bit"``, or ``"insecure"`` when opted into by name."""
        return self._native().security

    def __repr__(self) -> str:
        if self._inner is None:
            return (f"Context(poly_modulus_degree={self._degree}, "
                    f"coeff_mod_bit_sizes={self._bits}, keys not generated yet)")
        return repr(self._inner)


def context(scheme: SCHEME_TYPE = SCHEME_TYPE.CKKS, poly_modulus_degree: int = 8192,
            plain_modulus: Optional[int] = None,
            coeff_mod_bit_sizes: Sequence[int] = (60, 40, 40, 60), *,
            global_scale: Optional[float] = None, rotation_steps: Iterable[int] = (),
            special_primes: int = 1, flooding_bits: int = 30,
            insecure_allow_below_128_bit_security: bool = False, **_tenseal_options):
    """A context, as ``tenseal.context`` takes it.

    CKKS: keys are generated on first use, so ``global_scale`` may still be set afterwards.
    BFV: ``plain_modulus`` is a prime ≡ 1 (mod 2·poly_modulus_degree) (e.g. TenSEAL's 1032193;
    default: a 20-bit one), ``coeff_mod_bit_sizes`` defaults to Veil's chain for the degree
    when left at the CKKS default; returns a :class:`BFVContext`. Extra TenSEAL options
    (``n_threads``, ``encryption_type``) are accepted and ignored."""
    if scheme == SCHEME_TYPE.BFV:
        bits = None if tuple(coeff_mod_bit_sizes) == (60, 40, 40, 60) else list(coeff_mod_bit_sizes)
        return BFVContext(poly_modulus_degree=poly_modulus_degree, plain_modulus=plain_modulus,
                          coeff_mod_bit_sizes=bits,
                          insecure_allow_below_128_bit_security=insecure_allow_below_128_bit_security)
    if scheme != SCHEME_TYPE.CKKS:
        raise HeError(f"unknown scheme {scheme!r}")
    if plain_modulus is not None:
        raise HeError("plain_modulus is a BFV parameter; CKKS takes none")
    return Context(poly_modulus_degree=poly_modulus_degree,
                   coeff_mod_bit_sizes=coeff_mod_bit_sizes, global_scale=global_scale,
                   rotation_steps=rotation_steps, special_primes=special_primes,
                   flooding_bits=flooding_bits,
                   insecure_allow_below_128_bit_security=insecure_allow_below_128_bit_security)


def context_from_preset(name: str, *, rotation_steps: Iterable[int] = (),
                        flooding_bits: int = 30) -> Context:
    """A context from one of :data:`PRESETS` (keys generated now)."""
    return Context._wrap(_he.Context.preset(name, list(rotation_steps), flooding_bits))


def _split_context(data: bytes, magic: bytes, what: str):
    """(public bytes, secret-key bytes or None) of a serialized context: the magic, then two
    length-prefixed parts, nothing after."""
    data = bytes(data)
    if not data.startswith(magic) or len(data) < len(magic) + 16:
        raise HeError(f"not a serialized Veil {what} (bad magic or truncated)")
    at = len(magic)
    (n,) = struct.unpack_from("<Q", data, at)
    at += 8
    if n > len(data) - at - 8:
        raise HeError(f"serialized {what} is truncated")
    public = data[at:at + n]
    at += n
    (m,) = struct.unpack_from("<Q", data, at)
    at += 8
    if m != len(data) - at:
        raise HeError(f"serialized {what} has a bad secret-key length or trailing bytes")
    return public, (data[at:] if m else None)


def context_from(data: bytes, *, insecure_allow_below_128_bit_security: bool = False) -> Context:
    """Reads a context written by :meth:`Context.serialize`. Malformed bytes and parameters
    below 128-bit security (unless opted into by name) are refused."""
    public, secret = _split_context(data, _CONTEXT_MAGIC, "context")
    return Context._wrap(_he.Context.from_bytes(public, secret,
                                                insecure_allow_below_128_bit_security))


Operand = Union["CKKSVector", float, int, Sequence[float], np.ndarray]


_new_ckks = object.__new__


class CKKSVector:
    """An encrypted vector of reals. ``+ - *`` take another vector, a scalar or a plain
    array of the same length; the result is a new vector (the ``*_`` methods work in place)."""

    __slots__ = ("_v", "_ctx")

    def __init__(self, ctx: Context, values=None, *, _native=None):
        if not isinstance(ctx, Context):
            raise HeError(f"expected a veil.he.Context, got {type(ctx).__name__}")
        self._ctx = ctx
        self._v = _native if _native is not None else _he.Vector.encrypt(ctx._native(),
                                                                         _f64(values))

    def _new(self, native) -> "CKKSVector":
        # Not through __init__: the context is already checked (a microsecond per operation,
        # which is 5% of an addition).
        v = _new_ckks(CKKSVector)
        v._ctx = self._ctx
        v._v = native
        return v

    def _binary(self, other: Operand, op: str):
        # Checked in order of how cheap the test is; a Python float is the common scalar.
        if type(other) is CKKSVector:
            return self._new(getattr(self._v, op)(other._v))
        if type(other) is float or (isinstance(other, (int, float, np.integer, np.floating))
                                    and not isinstance(other, bool)):
            x = float(other)
            if not _isfinite(x):
                raise HeError("scalars must be finite")
            return self._new(getattr(self._v, op + "_scalar")(x))
        if isinstance(other, CKKSVector):
            return self._new(getattr(self._v, op)(other._v))
        return self._new(getattr(self._v, op + "_plain")(_f64(other, "the plain operand")))

    # -- arithmetic -----------------------------------------------------------------------
    def add(self, other: Operand) -> "CKKSVector":
        """``self + other``."""
        return self._binary(other, "add")

    def sub(self, other: Operand) -> "CKKSVector":
        """``self - other``."""
        return self._binary(other, "sub")

    def mul(self, other: Operand) -> "CKKSVector":
        """``self * other`` (element-wise)."""
        return self._binary(other, "mul")

    __add__ = add
    __radd__ = add
    __sub__ = sub
    __mul__ = mul
    __rmul__ = mul

    def __rsub__(self, other: Operand) -> "CKKSVector":
        return self.neg().add(other)

    def neg(self) -> "CKKSVector":
        """``-self``."""
        return self._new(self._v.neg())

    __neg__ = neg

    def square(self) -> "CKKSVector":
        """``self * self``."""
        return self._new(self._v.square())

    def pow(self, power: int) -> "CKKSVector":
        """``self ** power`` for an integer ``power ≥ 1`` (square-and-multiply)."""
        if not isinstance(power, (int, np.integer)) or isinstance(power, bool) or power < 1:
            raise HeError(f"the power must be an integer ≥ 1, got {power!r}")
        result, base, p = None, self, int(power)
        while p:
            if p & 1:
                result = base if result is None else result.mul(base)
            p >>= 1
            if p:
                base = base.square()
        return result

    __pow__ = pow

    def sum(self, axis: int = 0) -> "CKKSVector":
        """The sum of the elements (a vector of length 1)."""
        return self._new(self._v.sum())

    def dot(self, other: Operand) -> "CKKSVector":
        """Inner product with an encrypted or plain vector (length 1)."""
        if isinstance(other, CKKSVector):
            return self._new(self._v.dot(other._v))
        return self._new(self._v.dot_plain(_f64(other, "the plain operand")))

    def matmul(self, matrix) -> "CKKSVector":
        """Vector–matrix product ``self @ matrix`` with a plain ``len(self) × m`` matrix."""
        try:
            m = np.ascontiguousarray(matrix, dtype="<f8")
        except (TypeError, ValueError) as e:
            raise HeError(f"the matrix must be numbers: {e}") from None
        if m.ndim != 2:
            raise HeError(f"the matrix must be two-dimensional, got shape {m.shape}")
        if not np.all(np.isfinite(m)):
            raise HeError("the matrix must be finite")
        return self._new(self._v.matmul(m.tobytes(), m.shape[0], m.shape[1]))

    mm = matmul
    __matmul__ = matmul

    def polyval(self, coefficients: Sequence[float]) -> "CKKSVector":
        """``c0 + c1·x + c2·x² + …`` on every element."""
        return self._new(self._v.polyval([float(c) for c in coefficients]))

    def rotate(self, steps: int) -> "CKKSVector":
        """Rotates the elements left by ``steps`` (right if negative), cyclically."""
        return self._new(self._v.rotate(int(steps)))

    # -- in place (TenSEAL's trailing underscore) -------------------------------------------
    def add_(self, other: Operand) -> "CKKSVector":
        """In-place ``+=``."""
        self._v = self.add(other)._v
        return self

    def sub_(self, other: Operand) -> "CKKSVector":
        """In-place ``-=``."""
        self._v = self.sub(other)._v
        return self

    def mul_(self, other: Operand) -> "CKKSVector":
        """In-place ``*=``."""
        self._v = self.mul(other)._v
        return self

    def square_(self) -> "CKKSVector":
        """In-place square."""
        self._v = self._v.square()
        return self

    def polyval_(self, coefficients: Sequence[float]) -> "CKKSVector":
        """In-place polynomial evaluation."""
        self._v = self.polyval(coefficients)._v
        return self

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_

    # -- out ------------------------------------------------------------------------------
    def decrypt(self) -> np.ndarray:
        """The values, with noise flooding (safe to share). Needs the secret key."""
        self._require_secret()
        return _array(self._v.decrypt())

    def decrypt_with_flood_std(self):
        """``(values, flood_std)``: the values and the standard deviation of the flooding
        noise that was added to each."""
        self._require_secret()
        data, std = self._v.decrypt_flooded()
        return _array(data), std

    def decrypt_unflooded_for_key_holder_only(self) -> np.ndarray:
        """The values **without** flooding: their exact error reveals information about the
        secret key, so never share them."""
        self._require_secret()
        return _array(self._v.decrypt_unflooded_for_key_holder_only())

    def _require_secret(self) -> None:
        if not self._ctx.is_private():
            raise HeError("this vector's context has no secret key: only the key holder can "
                          "decrypt")

    def serialize(self) -> bytes:
        """The ciphertext as bytes (:func:`ckks_vector_from` reads it back)."""
        return self._v.serialize()

    def size(self) -> int:
        """Number of elements."""
        return len(self._v)

    def __len__(self) -> int:
        return len(self._v)

    @property
    def level(self) -> int:
        """Multiplications this vector can still take."""
        return self._v.level

    def context(self) -> Context:
        """The context this vector is linked to."""
        return self._ctx

    def link_context(self, ctx: Context) -> None:
        """Links the vector to another context with the same parameters (e.g. after
        deserializing it on the server and sending it back to the key holder)."""
        self._v = _he.Vector.from_bytes(ctx._native(), self._v.serialize())
        self._ctx = ctx

    def __repr__(self) -> str:
        return f"CKKSVector(size={len(self)}, level={self.level})"


def ckks_vector(ctx: Context, values) -> CKKSVector:
    """Encrypts a one-dimensional array of reals (at most ``ctx.slots`` of them)."""
    return CKKSVector(ctx, values)


def ckks_vector_from(ctx: Context, data: bytes) -> CKKSVector:
    """Reads a vector serialized under the same parameters; malformed bytes are refused."""
    if not isinstance(ctx, Context):
        raise HeError(f"expected a veil.he.Context, got {type(ctx).__name__}")
    return CKKSVector(ctx, _native=_he.Vector.from_bytes(ctx._native(), bytes(data)))


# ---------------------------------------------------------------------------------------------
# BFV: exact integers modulo t (TenSEAL's BFVVector)
# ---------------------------------------------------------------------------------------------

_BFV_MAGIC = b"VEILPYB1"


def _ints(values, what: str = "values") -> list:
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as e:
        raise HeError(f"{what} must be integers: {e}") from None
    if arr.ndim != 1:
        raise HeError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iubO":
        raise HeError(f"{what} must be integers, got {arr.dtype}")
    out = []
    for x in arr:
        if not isinstance(x, (int, np.integer, np.bool_)):
            raise HeError(f"{what} must be integers, got {type(x).__name__}")
        v = int(x)
        if not -(2 ** 63) <= v < 2 ** 63:
            raise HeError(f"{what}: {v} is outside the plaintext range")
        out.append(v)
    return out


class BFVContext:
    """BFV parameters and keys: ``N`` integers modulo ``plain_modulus`` per ciphertext (a
    2 × N/2 matrix; rotations act within rows). The data owner's context holds the secret
    key; the computing party gets :meth:`make_context_public` / ``serialize()``."""

    __slots__ = ("_inner",)

    def __init__(self, *, poly_modulus_degree: int = 8192, plain_modulus: Optional[int] = None,
                 coeff_mod_bit_sizes: Optional[Sequence[int]] = None,
                 insecure_allow_below_128_bit_security: bool = False, _inner=None):
        if _inner is None:
            _inner = _he.BfvContext(
                int(poly_modulus_degree),
                None if plain_modulus is None else int(plain_modulus),
                20,
                None if coeff_mod_bit_sizes is None else [int(b) for b in coeff_mod_bit_sizes],
                bool(insecure_allow_below_128_bit_security),
            )
        self._inner = _inner

    def generate_galois_keys(self) -> None:
        """Kept for TenSEAL code: the rotation keys are made with the context."""

    def generate_relin_keys(self) -> None:
        """Kept for TenSEAL code: the relinearization key is made with the context."""

    def is_private(self) -> bool:
        return self._inner.is_private()

    def is_public(self) -> bool:
        return not self._inner.is_private()

    def make_context_public(self) -> None:
        """Drops the secret key from this context (in place, as TenSEAL)."""
        self._inner = self._inner.make_public()

    def public(self) -> "BFVContext":
        """A copy without the secret key."""
        return BFVContext(_inner=self._inner.make_public())

    def serialize(self, save_secret_key: bool = False) -> bytes:
        """The public keys and parameters, and the secret key only if asked."""
        public = self._inner.public_bytes()
        secret = self._inner.secret_key_bytes() if save_secret_key else None
        secret = secret or b""
        return (_BFV_MAGIC + struct.pack("<Q", len(public)) + public
                + struct.pack("<Q", len(secret)) + secret)

    @property
    def poly_modulus_degree(self) -> int:
        return self._inner.poly_modulus_degree

    @property
    def plain_modulus(self) -> int:
        return self._inner.plain_modulus

    @property
    def coeff_mod_bit_sizes(self) -> list:
        return list(self._inner.coeff_mod_bit_sizes)

    @property
    def slots(self) -> int:
        return self._inner.slots

    @property
    def security(self) -> str:
        return self._inner.security

    def __repr__(self) -> str:
        return repr(self._inner)


def bfv_context_from(data: bytes, *,
                     insecure_allow_below_128_bit_security: bool = False) -> BFVContext:
    """Reads a context written by :meth:`BFVContext.serialize`; malformed bytes and
    parameters below 128-bit security (unless opted into by name) are refused."""
    public, secret = _split_context(data, _BFV_MAGIC, "BFV context")
    return BFVContext(_inner=_he.BfvContext.from_bytes(public, secret,
                                                       insecure_allow_below_128_bit_security))


BfvOperand = Union["BFVVector", int, Sequence[int], np.ndarray]


class BFVVector:
    """An encrypted vector of integers modulo ``plain_modulus`` (values given and returned
    signed, in (−t/2, t/2]; arithmetic wraps modulo t). ``+ - *`` take another vector, an
    integer or a plain integer array of the same length.

    ``decrypt()`` is exact. It refuses (``HeError``) when the vector's public noise estimate
    says the result may be wrong — computed from the operations alone, so the refusal reveals
    nothing about the key — instead of returning garbage."""

    __slots__ = ("_v", "_ctx")

    def __init__(self, ctx: BFVContext, values=None, *, _native=None):
        if not isinstance(ctx, BFVContext):
            raise HeError(f"expected a veil.he.BFVContext, got {type(ctx).__name__}")
        self._ctx = ctx
        self._v = _native if _native is not None else _he.BfvVector.encrypt(ctx._inner,
                                                                            _ints(values))

    def _new(self, native) -> "BFVVector":
        return BFVVector(self._ctx, _native=native)

    def _binary(self, other: BfvOperand, vec, plain, scalar):
        if isinstance(other, BFVVector):
            return self._new(vec(other._v))
        if isinstance(other, (int, np.integer)) and not isinstance(other, bool):
            return self._new(scalar(int(other)))
        return self._new(plain(_ints(other, "the plain operand")))

    def add(self, other: BfvOperand) -> "BFVVector":
        v = self._v
        return self._binary(other, v.add, v.add_plain, v.add_scalar)

    def sub(self, other: BfvOperand) -> "BFVVector":
        v = self._v
        return self._binary(other, v.sub, v.sub_plain, lambda c: v.add_scalar(-c))

    def mul(self, other: BfvOperand) -> "BFVVector":
        v = self._v
        return self._binary(other, v.mul, v.mul_plain, v.mul_scalar)

    __add__ = __radd__ = add
    __sub__ = sub
    __mul__ = __rmul__ = mul

    def __rsub__(self, other: BfvOperand) -> "BFVVector":
        return self.neg().add(other)

    def neg(self) -> "BFVVector":
        return self._new(self._v.neg())

    __neg__ = neg

    def square(self) -> "BFVVector":
        return self._new(self._v.square())

    def sum(self, axis: int = 0) -> "BFVVector":
        """The sum of all values (a vector of length 1)."""
        if axis != 0:
            raise HeError("a BFVVector has one axis")
        return self._new(self._v.sum())

    def dot(self, other: "BFVVector") -> "BFVVector":
        """The dot product with another encrypted vector (length 1)."""
        if not isinstance(other, BFVVector):
            return self.mul(other).sum()
        return self._new(self._v.dot(other._v))

    def rotate(self, steps: int) -> "BFVVector":
        """Rotates left by ``steps`` within the row (zeros come in past the vector's end)."""
        return self._new(self._v.rotate(int(steps)))

    def decrypt(self) -> list:
        """The exact values (signed). Needs the secret key."""
        return self._v.decrypt()

    def noise_budget(self) -> int:
        """The measured invariant noise budget in bits (SEAL's number). It depends on the
        secret key: keep it to yourself."""
        return self._v.noise_budget()

    def estimated_noise_budget(self) -> Optional[float]:
        """The public estimate of the budget left (``None`` for a vector read from bytes)."""
        return self._v.estimated_noise_budget()

    def serialize(self) -> bytes:
        return self._v.to_bytes()

    def size(self) -> int:
        return len(self._v)

    def __len__(self) -> int:
        return len(self._v)

    @property
    def level(self) -> int:
        return self._v.level

    def context(self) -> BFVContext:
        return self._ctx

    def __repr__(self) -> str:
        return f"BFVVector(size={len(self._v)}, level={self._v.level})"


def bfv_vector(ctx: BFVContext, values) -> BFVVector:
    """Encrypts integers (TenSEAL's ``ts.bfv_vector``)."""
    return BFVVector(ctx, values)


def bfv_vector_from(ctx: BFVContext, data: bytes) -> BFVVector:
    """Reads a vector written by :meth:`BFVVector.serialize`."""
    return BFVVector(ctx, _native=_he.BfvVector.from_bytes(ctx._inner, bytes(data)))
