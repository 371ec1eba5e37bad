"""Veil: protect sensitive data while it is being computed on.

- :mod:`veil.he` — homomorphic encryption (CKKS) with a TenSEAL-like API.
- :mod:`veil.ml` — encrypted inference of ONNX models (client/server split).
- :mod:`veil.tee` — verification of remote-attestation evidence (SGX, TDX, SEV-SNP).
- :mod:`veil.dp` — differential privacy: SQL over files or pandas DataFrames with a privacy
  budget that is never overspent, mechanisms that charge before they release, local DP.

Every error is a :class:`VeilError`; each protection has its own subclass
(:class:`HeError`, :class:`MlError`, :class:`TeeError`, :class:`DpError` and its
:class:`BudgetExhausted`).
"""

from ._native import (BudgetExhausted, DpError, HeError, MlError, TeeError, VeilError,
                      __version__)
from . import dp, he, ml, tee

__all__ = ["he", "ml", "dp", "tee", "VeilError", "HeError", "MlError", "DpError",
           "BudgetExhausted", "TeeError", "__version__"]
