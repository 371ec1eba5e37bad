"""Veil: protect sensitive data while it is being computed on.

- :mod:`veil.he` — homomorphic encryption (CKKS) with a TenSEAL-like API.
- :mod:`veil.ml` — encrypted inference of ONNX models (client/server split).
- :mod:`veil.mpc` — secure multi-party computation: parties and dealer as processes over
  mutual TLS (``Session.local().stats(...)``), or one party of a real multi-machine session.
- :mod:`veil.tee` — verification of remote-attestation evidence (SGX, TDX, SEV-SNP).
- :mod:`veil.dp` — differential privacy: SQL over files or pandas DataFrames with a privacy
  budget that is never overspent, mechanisms that charge before they release, local DP.

Every error is a :class:`VeilError`; each protection has its own subclass
(:class:`HeError`, :class:`MlError`, :class:`MpcError`, :class:`TeeError`, :class:`DpError` and its
:class:`BudgetExhausted`).
"""

from ._native import (BudgetExhausted, DpError, HeError, MlError, MpcError, TeeError,
                      VeilError, __version__)
from . import dp, he, ml, mpc, tee

__all__ = ["he", "ml", "dp", "mpc", "tee", "VeilError", "HeError", "MlError", "DpError",
           "BudgetExhausted", "MpcError", "TeeError", "__version__"]
