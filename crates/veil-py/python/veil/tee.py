"""Confidential computing: verify remote-attestation evidence before trusting a TEE.

::

    import veil.tee as tee

    claims = tee.verify(quote, collateral=collateral_json)      # SGX / TDX, offline
    claims = tee.verify(report, vcek=vcek_der)                  # AMD SEV-SNP
    claims["measurements"], claims["tcb_status"], claims["report_data"]

Evidence is checked at ``at`` (now by default): evidence whose collateral, certificates or
CRLs are not valid at that time is refused — a quote is not accepted at any date. Anything
that does not verify raises :class:`TeeError` with the reason. :class:`SimulatedTee` issues
evidence for development without TEE hardware (claims say ``"tee": "sim"``: no protection).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from typing import Optional, Union

from ._native import TeeError
from ._native import tee as _tee

__all__ = ["verify", "evidence_kind", "SimulatedTee", "TeeError"]

#: A simulated TEE platform: ``SimulatedTee(seed=None)``, ``.public_key()``,
#: ``.issue(measurement48, report_data64, debug=False, svn=0)`` → evidence bytes.
SimulatedTee = _tee.SimulatedTee

BytesOrPath = Union[bytes, bytearray, str, os.PathLike]


def _bytes(value: Optional[BytesOrPath], what: str) -> Optional[bytes]:
    if value is None or isinstance(value, (bytes, bytearray)):
        return None if value is None else bytes(value)
    if isinstance(value, (str, os.PathLike)):
        try:
            with open(value, "rb") as f:
                return f.read()
        except OSError as e:
            raise TeeError(f"{what}: cannot read {value}: {e}") from None
    raise TeeError(f"{what} must be bytes or a file path, got {type(value).__name__}")


def _time(at) -> int:
    if at is None:
        return int(time.time())
    if isinstance(at, bool):
        raise TeeError("at must be a time")
    if isinstance(at, (int, float)):
        return int(at)
    if isinstance(at, _dt.datetime):
        if at.tzinfo is None:
            raise TeeError("at must be timezone-aware (e.g. datetime(..., tzinfo=timezone.utc))")
        return int(at.timestamp())
    if isinstance(at, _dt.date):
        return int(_dt.datetime(at.year, at.month, at.day, tzinfo=_dt.timezone.utc).timestamp())
    if isinstance(at, str):
        try:
            t = _dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise TeeError(f"at {at!r} is not an ISO 8601 time or date") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.timezone.utc)
        return int(t.timestamp())
    raise TeeError(f"at must be a datetime, a date, an ISO string or Unix seconds, got {at!r}")


def evidence_kind(evidence: BytesOrPath) -> str:
    """What the evidence claims to be (``"sgx"``, ``"tdx"``, ``"snp"``, ``"simulated"``),
    without verifying it."""
    return _tee.evidence_kind(_bytes(evidence, "evidence"))


def verify(evidence: BytesOrPath, *, at=None, collateral: Optional[Union[str, os.PathLike]] = None,
           vcek: Optional[BytesOrPath] = None, vlek: Optional[BytesOrPath] = None,
           snp_min_tcb: Optional[str] = None,
           sim_platform_key: Optional[bytes] = None) -> dict:
    """Verifies evidence and returns its claims (``tee``, ``measurements``, ``signer``,
    ``debug``, ``tcb_status``, ``advisory_ids``, ``report_data``, …).

    Trust anchors: ``collateral`` (Intel's collateral JSON text, or its path) for SGX/TDX;
    ``vcek`` or ``vlek`` (DER bytes or path) for SEV-SNP, with ``snp_min_tcb`` such as
    ``"bootloader=3,tee=0,snp=8,microcode=115"`` for an ``UpToDate``/``OutOfDate`` status;
    ``sim_platform_key`` for the simulated TEE."""
    coll = None
    if collateral is not None:
        if isinstance(collateral, str) and collateral.lstrip().startswith("{"):
            coll = collateral
        else:
            raw = _bytes(collateral, "collateral")
            try:
                coll = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise TeeError("collateral must be UTF-8 JSON") from None
    out = _tee.verify(_bytes(evidence, "evidence"), _time(at), coll, _bytes(vcek, "vcek"),
                      _bytes(vlek, "vlek"), snp_min_tcb,
                      None if sim_platform_key is None else bytes(sim_platform_key))
    return json.loads(out)
