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
           "report_data", "attest", "release", "fetch_secret", "PartyKey", "Room"]

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


def _text(value, what: str, inline: bool, kind: str) -> str:
    """``value`` itself when ``inline`` (the caller saw the text), else the UTF-8 ``kind``
    text of the file (or bytes) it gives."""
    if inline:
        return value
    raw = _bytes(value, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TeeError(f"{what} must be UTF-8 {kind}") from None


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
        inline = isinstance(collateral, str) and collateral.lstrip().startswith("{")
        coll = _text(collateral, "collateral", inline, "JSON")
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


# --- Data rooms: a party's client --------------------------------------------------------

class PartyKey:
    """A party's keys for data rooms: an Ed25519 key that signs its requests and an X25519 key
    its outputs are sealed to (what ``veil room keygen`` makes).

    ``PartyKey.generate("hospital-a")`` makes fresh keys; :meth:`save` writes the secret key
    file (mode 0600) and the public one (``name.pub``, for whoever writes the manifest);
    :meth:`load` reads a secret key file back. The secret halves live in Rust and are zeroized
    when the object is freed."""

    __slots__ = ("_inner",)

    def __init__(self, inner):
        if not isinstance(inner, _tee.PartyKey):
            raise TeeError("use PartyKey.generate(name) or PartyKey.load(path)")
        self._inner = inner

    @classmethod
    def generate(cls, name: str) -> "PartyKey":
        """Fresh keys for the party ``name``."""
        if not isinstance(name, str):
            raise TeeError(f"name must be a string, got {type(name).__name__}")
        return cls(_tee.PartyKey.generate(name))

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "PartyKey":
        """The keys in a secret key file (``veil room keygen``'s ``name.key``)."""
        return cls(_tee.PartyKey.from_text(_text(path, "key file", False, "TOML")))

    @property
    def name(self) -> str:
        """The party's name."""
        return self._inner.name

    def public_text(self) -> str:
        """The public key file's text (TOML): the name, the signing and encryption keys."""
        return self._inner.public_text()

    def save(self, directory: Union[str, os.PathLike] = ".") -> tuple:
        """Writes ``name.key`` (secret, mode 0600, never overwritten) and ``name.pub`` into
        ``directory``; returns their paths."""
        os.makedirs(directory, exist_ok=True)
        secret = os.path.join(directory, f"{self.name}.key")
        public = os.path.join(directory, f"{self.name}.pub")
        try:
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise TeeError(f"{secret} exists: a key file is never overwritten") from None
        with os.fdopen(fd, "w") as f:
            f.write(self._inner.to_text())
        with open(public, "w") as f:
            f.write(self.public_text())
        return secret, public

    def __repr__(self) -> str:
        return f"PartyKey({self.name!r})"


class Room:
    """A party's client for a data room: parties that do not trust each other (nor the
    operator) pool data in a TEE that runs the code their manifest names, and each gets only
    the output the manifest sends it. ``manifest`` is the party's own copy (a path, or its
    TOML text): every request checks the room against it.

    ::

        room = tee.Room("http://127.0.0.1:7600", "room.toml")
        key = tee.PartyKey.load("hospital-a.key")
        room.verify()                                   # the attested code is the manifest's
        room.upload(key, df, column="age")              # sealed to the attested workload
        room.run(key)                                   # once every party uploaded
        room.output(key)                                # {"count": …, "mean": …, …}
        room.audit()                                    # the signed, chained log

    :meth:`verify`, :meth:`upload`, :meth:`output` and :meth:`audit` each verify fresh
    evidence first: a room that runs other code, on an untrusted platform, or for another
    manifest is refused with :class:`TeeError` before any data leaves."""

    __slots__ = ("_client", "url")

    def __init__(self, url: str, manifest: Union[str, os.PathLike]):
        self.url = _url(url, "url")
        inline = isinstance(manifest, str) and "\n" in manifest
        self._client = _tee.RoomClient(self.url, _text(manifest, "manifest", inline, "TOML"))

    @property
    def room_id(self) -> str:
        """The room id (hex SHA-256 of the manifest)."""
        return self._client.room_id

    @property
    def name(self) -> str:
        """The room's name."""
        return self._client.name

    @property
    def parties(self) -> list:
        """The parties' names."""
        return self._client.parties

    @property
    def output_to(self) -> list:
        """The parties that receive the output."""
        return self._client.output_to

    @property
    def input_format(self) -> str:
        """``"f64-column"``, ``"f64-labelled-rows"`` or ``"raw"``."""
        return self._client.input_format

    def verify(self) -> dict:
        """Checks that the room serves this manifest and that its fresh evidence satisfies it
        (platform, measurement, security version, binding of the room id and its keys);
        returns ``room_id``, ``claims``, ``workload_key``, ``audit_key``."""
        return json.loads(self._client.verify())

    def _encode(self, data, column: Optional[str]) -> tuple:
        """(input bytes, default label) for ``data``."""
        fmt = self.input_format
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
            if fmt == "raw":
                return data, "data"
            try:
                return self._client.encode_csv(data.decode("utf-8"), column), "data"
            except UnicodeDecodeError:
                raise TeeError("data: bytes for a table must be UTF-8 CSV") from None
        if isinstance(data, (str, os.PathLike)):
            raw = _bytes(data, "data")
            label = os.path.basename(os.fspath(data)) or "data"
            if fmt == "raw":
                return raw, label
            try:
                return self._client.encode_csv(raw.decode("utf-8"), column), label
            except UnicodeDecodeError:
                raise TeeError(f"{data} is not a UTF-8 CSV") from None
        if fmt == "raw":
            raise TeeError("this room takes raw bytes or a file path")
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is optional
            pd = None
        if pd is not None and isinstance(data, pd.Series):
            data = data.to_frame(name=str(data.name) if data.name is not None else "value")
        if pd is not None and isinstance(data, pd.DataFrame):
            if column is not None:
                if column not in data.columns:
                    raise TeeError(f"the DataFrame has no column {column!r}")
                data = data[[column]]
            if fmt == "f64-column" and data.shape[1] != 1:
                raise TeeError(f"the DataFrame has {data.shape[1]} columns: name the one to "
                               "upload (column=...)")
            # Without the header: column names that look like numbers (a DataFrame made from
            # an array has 0, 1, …) would otherwise be read as a row of data.
            return self._client.encode_csv(data.to_csv(index=False, header=False), None), \
                "dataframe"
        import numpy as np
        try:
            array = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            raise TeeError(f"cannot upload {type(data).__name__}: give bytes, a CSV path, a "
                           "DataFrame or numbers") from None
        want = 1 if fmt == "f64-column" else 2
        if array.ndim != want:
            raise TeeError(f"this room takes a {want}-D array of numbers, got shape "
                           f"{array.shape}")
        if column is not None:
            raise TeeError("column= names a column of a CSV or DataFrame, not of an array")
        text = "\n".join(",".join(repr(float(v)) for v in np.atleast_1d(row)) for row in array)
        return self._client.encode_csv(text + "\n", None), "array"

    def upload(self, key: PartyKey, data, *, column: Optional[str] = None,
               label: Optional[str] = None) -> dict:
        """Verifies the room, then uploads ``data`` sealed to its attested key and signed by
        ``key``: a pandas DataFrame or Series, a numpy array, a CSV file path, or bytes (CSV
        text, or the input itself for a ``raw`` room). ``column`` picks a DataFrame's or CSV's
        column for a one-column input. Returns the room's signed receipt (checked)."""
        if not isinstance(key, PartyKey):
            raise TeeError(f"key must be a PartyKey, got {type(key).__name__}")
        payload, default = self._encode(data, column)
        return json.loads(self._client.upload(key._inner, label or default, payload))

    def run(self, key: PartyKey) -> dict:
        """Asks the room to run its code over every party's upload (a party of the manifest
        signs the request); returns ``output_bytes``, ``output_sha256``, ``output_to``,
        ``fuel_used``."""
        if not isinstance(key, PartyKey):
            raise TeeError(f"key must be a PartyKey, got {type(key).__name__}")
        return json.loads(self._client.run(key._inner))

    def output(self, key: PartyKey, *, raw: bool = False):
        """Verifies the room and fetches the output sealed to ``key``'s party: a dict of the
        manifest's labelled values, or the bytes when ``raw`` is set or the output is not a
        sequence of numbers."""
        if not isinstance(key, PartyKey):
            raise TeeError(f"key must be a PartyKey, got {type(key).__name__}")
        out = self._client.fetch_output(key._inner)
        if raw:
            return out
        values = self._client.decode_output(out)
        return out if values is None else dict(values)

    def audit(self) -> list:
        """Verifies the room and fetches its audit log for a fresh nonce: the chain, every
        entry's signature by the attested audit key and the signed head (so no entry was
        dropped from the end) are checked. Entries have ``event``, ``time``, ``details``."""
        return json.loads(self._client.audit())

    def __repr__(self) -> str:
        return f"Room({self.name!r}, {self.url!r})"
