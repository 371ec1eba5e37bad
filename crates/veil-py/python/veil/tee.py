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

Inside a TEE, a workload gets a key from Veil's key broker in three requests — a nonce from
the attestation service, a token for evidence binding that nonce and the workload's key, the
secret sealed to that key::

    key = tee.WorkloadKey()
    secret = tee.fetch_secret("https://attest.example", "https://kbs.example", "model-key",
                              key=key, evidence=my_platform_quote)   # report_data -> evidence

or step by step with :func:`nonce`, :func:`report_data`, :func:`attest`, :func:`release` and
:meth:`WorkloadKey.open`. The services' refusals (policy, replayed nonce, evidence not binding
the key, a token for another workload) raise :class:`TeeError` with their reason.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from typing import Optional, Union

from ._native import TeeError
from ._native import tee as _tee

__all__ = ["verify", "evidence_kind", "SimulatedTee", "TeeError", "WorkloadKey", "nonce",
           "report_data", "attest", "release", "fetch_secret"]

#: A simulated TEE platform: ``SimulatedTee(seed=None)``, ``.public_key()``,
#: ``.issue(measurement48, report_data64, debug=False, svn=0)`` → evidence bytes.
SimulatedTee = _tee.SimulatedTee

#: A workload's HPKE key pair: ``WorkloadKey(private_key=None)``, ``.public_key()``,
#: ``.private_key()``, ``.open(release(...))`` → the secret's bytes.
WorkloadKey = _tee.WorkloadKey

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


def _url(url, what: str) -> str:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise TeeError(f"{what} must be an http:// or https:// URL, got {url!r}")
    return url


def nonce(service: str) -> str:
    """A fresh single-use nonce (base64url) from the attestation service at ``service``."""
    return _tee.nonce(_url(service, "service"))


def report_data(nonce: str, public_key: bytes, runtime_data: bytes = b"") -> bytes:
    """The 64 bytes of report data the evidence must carry to bind ``nonce``, the workload's
    ``public_key`` (the key secrets are sealed to) and ``runtime_data``."""
    return _tee.report_data(str(nonce), bytes(public_key), bytes(runtime_data))


def attest(service: str, evidence: BytesOrPath, *, nonce: str, public_key: bytes,
           runtime_data: bytes = b"") -> dict:
    """Sends evidence to the attestation service; returns ``{"token": JWT, "claims": {…}}``.
    The evidence must bind ``nonce`` (from :func:`nonce`, single use), ``public_key`` and
    ``runtime_data`` (:func:`report_data`) and satisfy the service's policy."""
    out = _tee.attest(_url(service, "service"), _bytes(evidence, "evidence"), str(nonce),
                      bytes(public_key), bytes(runtime_data))
    return json.loads(out)


def release(kbs: str, name: str, token: str) -> dict:
    """Asks the key broker at ``kbs`` for the secret ``name`` with an attestation ``token``;
    returns the secret sealed to the key the token names (open it with
    :meth:`WorkloadKey.open`)."""
    return json.loads(_tee.release(_url(kbs, "kbs"), str(name), str(token)))


def fetch_secret(service: str, kbs: str, name: str, *, key, evidence,
                 runtime_data: bytes = b"") -> bytes:
    """The whole flow: a nonce, evidence from ``evidence(report_data)`` (the platform's quote
    over those 64 bytes), a token, the secret released and opened with ``key`` (a
    :class:`WorkloadKey`)."""
    if not isinstance(key, WorkloadKey):
        raise TeeError(f"key must be a WorkloadKey, got {type(key).__name__}")
    n = nonce(service)
    public = key.public_key()
    ev = evidence(report_data(n, public, runtime_data))
    token = attest(service, ev, nonce=n, public_key=public, runtime_data=runtime_data)["token"]
    return key.open(release(kbs, name, token))
