"""Secure multi-party computation from Python: parties compute on secret shares of their
data over mutual TLS, with a dealer of correlated randomness; only the parties that learn
results see them.

From a notebook, every participant runs as its own process on loopback::

    import numpy as np
    import veil.mpc as mpc

    session = mpc.Session.local(parties=3)          # CA, certificates, keys, free ports
    result = session.stats([hospital_a, hospital_b, hospital_c], low=0, high=120, bins=12)
    result["mean"], result["histogram"]

    pair = mpc.Session.local(parties=2)             # private set intersection
    pair.psi(clinic_patients, insurer_customers, normalize="trim,casefold,nfkc")["intersection"]

Each participant is ``python -m veil._mpc_worker``. On real separate machines, each
participant calls :func:`party_stats` (or ``veil mpc party``) with the session made by ``veil
mpc init`` / ``keygen`` / ``certify``, and the dealer's host calls :func:`dealer` (or ``veil
mpc dealer``); for an intersection, each side calls :func:`psi` (or ``veil psi``; the two
interoperate), no dealer. The security model (the dealer
together with any one party learns everything; semi-honest) is in ``docs/security/mpc.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import weakref
from typing import List, Optional, Sequence

import numpy as np

from ._native import MpcError
from ._native import mpc as _mpc

__all__ = ["Session", "party_stats", "dealer", "psi", "MpcError"]


def _column(values, max_abs: float, who: str) -> np.ndarray:
    try:
        arr = np.ascontiguousarray(values, dtype="<f8")
    except (TypeError, ValueError) as e:
        raise MpcError(f"{who}: values must be numbers: {e}") from None
    if arr.ndim != 1:
        raise MpcError(f"{who}: values must be one-dimensional, got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (np.abs(arr) > max_abs)
    if bad.any():
        i = int(np.argmax(bad))
        raise MpcError(f"{who}: value {i} ({arr[i]}) is beyond max_abs {max_abs} (every "
                       "party must give the same bound)")
    return arr


def party_stats(config, party: int, values, *, low: float = 0.0, high: float = 100.0,
                bins: int = 10, max_abs: float = 1e6) -> Optional[dict]:
    """Runs this process as party ``party`` of the session ``config`` (its ``parties.toml``)
    in the ``stats`` program: count, sum, mean, variance, standard deviation and histogram
    of every party's values together. Returns the result where the session says this party
    learns it, ``None`` elsewhere. Every participant must give the same options."""
    arr = _column(values, float(max_abs), f"party {party}")
    out = _mpc.stats_party(os.fspath(config), int(party), arr.tobytes(), float(low),
                           float(high), int(bins), float(max_abs))
    return None if out is None else json.loads(out)


def _identifiers(items, who: str) -> List[str]:
    """A set's identifiers as strings: a sequence, numpy array or pandas Series of ``str``."""
    if isinstance(items, (str, bytes)):
        raise MpcError(f"{who}: give a sequence of identifiers, not one string")
    try:
        values = list(items)
    except TypeError:
        raise MpcError(f"{who}: identifiers must be a sequence of strings") from None
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise MpcError(f"{who}: identifier {i} is a {type(v).__name__}, not a str "
                           "(convert numbers to text the same way on both sides)")
    return values


def psi(config, party: int, items, *, normalize: str = "trim",
        cardinality_only: bool = False) -> dict:
    """Runs this process as one side of a private set intersection in the two-party session
    ``config``: party 0 **receives** and gets ``{"intersection": [...], "size",
    "other_set_size"}`` (``intersection`` is ``None`` with ``cardinality_only``); party 1
    **sends** and gets only ``{"other_set_size"}``, the receiver's set size. Identifiers are
    normalised first (``normalize``: ``trim``, ``casefold``, ``nfkc``, comma-separated, or
    ``none``); both sides must give the same options, or the connection is refused. No
    dealer. The other side may be ``veil psi``. Diffie–Hellman over Ristretto255, semi-honest
    (``docs/security/mpc.md``)."""
    values = _identifiers(items, f"party {party}")
    return json.loads(_mpc.psi_party(os.fspath(config), int(party), values, str(normalize),
                                     bool(cardinality_only)))


def dealer(config, *, low: float = 0.0, high: float = 100.0, bins: int = 10,
           max_abs: float = 1e6) -> dict:
    """Runs the session's dealer for the ``stats`` program until the parties end it."""
    spec = _mpc.stats_spec(float(low), float(high), int(bins), float(max_abs))
    requests, corrections = _mpc.run_dealer(os.fspath(config), spec)
    return {"requests": requests, "correction_bytes": corrections}


class Session:
    """A session: its parties, their addresses and certificates (``parties.toml``)."""

    def __init__(self, config):
        self.config = os.fspath(config)
        #: The parties' names, in order (party ``i`` is ``parties[i]``).
        self.parties: List[str] = _mpc.parties(self.config)

    @staticmethod
    def local(parties: int = 3, names: Optional[Sequence[str]] = None) -> "Session":
        """A throwaway session on loopback (a temp dir removed with the object)."""
        names = list(names) if names is not None else [f"p{i}" for i in range(int(parties))]
        tmp = tempfile.mkdtemp(prefix="veil-mpc-")
        try:
            session = Session(_mpc.local_session(tmp, names))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        weakref.finalize(session, shutil.rmtree, tmp, True)
        return session

    def psi(self, receiver_items, sender_items, *, normalize: str = "trim",
            cardinality_only: bool = False, timeout: float = 300.0) -> dict:
        """Private set intersection between the session's two parties, each in its own
        process over mutual TLS: party 0 holds ``receiver_items`` and learns the common
        identifiers (or only how many with ``cardinality_only``), party 1 holds
        ``sender_items`` and learns only the receiver's set size. Returns the receiver's
        result (see :func:`psi`)."""
        if len(self.parties) != 2:
            raise MpcError(f"PSI is between 2 parties; this session has {len(self.parties)}")
        sets = [_identifiers(receiver_items, "party 0"), _identifiers(sender_items, "party 1")]
        work = tempfile.mkdtemp(prefix="veil-psi-inputs-")
        try:
            args = []
            for i, items in enumerate(sets):
                path = os.path.join(work, f"{i}.json")
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(items, f)
                args.append(["psi", self.config, str(i), path, str(normalize),
                             "1" if cardinality_only else "0"])
            outs = _run_workers(args, timeout)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return json.loads(outs[0])

    def stats(self, columns: Sequence, *, low: float = 0.0, high: float = 100.0,
              bins: int = 10, max_abs: float = 1e6, timeout: float = 300.0) -> dict:
        """Runs the ``stats`` program with one private column per party, each party and the
        dealer in its own process over mutual TLS; returns what the learning parties learn.
        A value beyond ``max_abs`` is refused before anything is sent."""
        if len(columns) != len(self.parties):
            raise MpcError(f"give one column per party ({len(self.parties)}), got {len(columns)}")
        cols = [_column(c, float(max_abs), f"party {i}") for i, c in enumerate(columns)]
        options = [str(float(low)), str(float(high)), str(int(bins)), str(float(max_abs))]
        work = tempfile.mkdtemp(prefix="veil-mpc-inputs-")
        try:
            args = [["dealer", self.config, *options]]
            for i, col in enumerate(cols):
                path = os.path.join(work, f"{i}.npy")
                np.save(path, col)
                args.append(["party", self.config, str(i), path, *options])
            outs = _run_workers(args, timeout, names=["dealer"] + [f"party {i}" for i in
                                                                    range(len(cols))])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results = [json.loads(o) for o in outs[1:] if o.strip() not in ("", "null")]
        if not results:
            raise MpcError("no party learns results in this session")
        return results[0]


def _run_workers(args: List[List[str]], timeout: float,
                 names: Optional[List[str]] = None) -> List[str]:
    """Runs one ``python -m veil._mpc_worker`` process per argument list, concurrently;
    returns their standard outputs, or raises :class:`MpcError` naming each one that failed
    (or all of them after ``timeout`` seconds)."""
    names = names or [f"party {i}" for i in range(len(args))]
    procs = []
    outs = []
    try:
        cmd = [sys.executable, "-m", "veil._mpc_worker"]
        # Parties allocate and free many-megabyte buffers per round: mimalloc keeps them
        # (as `veil mpc run` does for its processes).
        env = dict(os.environ, MIMALLOC_PURGE_DELAY="-1")
        for a in args:
            procs.append(subprocess.Popen(cmd + a, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE))
        for p in procs:
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise MpcError(f"the session did not finish within {timeout} s") from None
            outs.append((p.returncode, out.decode(), err.decode()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [(i, e) for i, (rc, _, e) in enumerate(outs) if rc != 0]
    if failed:
        raise MpcError("; ".join(
            f"{names[i]}: {e.strip().splitlines()[-1] if e.strip() else 'failed'}"
            for i, e in failed))
    return [o for _, o, _ in outs]
