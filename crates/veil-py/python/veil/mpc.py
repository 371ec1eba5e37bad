"""Secure multi-party computation from Python: parties compute on secret shares of their
data over mutual TLS, with a dealer of correlated randomness; only the parties that learn
results see them.

From a notebook, every participant runs as its own process on loopback::

    import numpy as np
    import veil.mpc as mpc

    session = mpc.Session.local(parties=3)          # CA, certificates, keys, free ports
    result = session.stats([hospital_a, hospital_b, hospital_c], low=0, high=120, bins=12)
    result["mean"], result["histogram"]

Each participant is ``python -m veil._mpc_worker``. On real separate machines, each participant calls :func:`party_stats` (or ``veil mpc
party``) with the session made by ``veil mpc init`` / ``keygen`` / ``certify``, and the
dealer's host calls :func:`dealer` (or ``veil mpc dealer``). The security model (the dealer
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

__all__ = ["Session", "party_stats", "dealer", "MpcError"]


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
        procs = []
        try:
            cmd = [sys.executable, "-m", "veil._mpc_worker"]
            # Parties allocate and free many-megabyte buffers per round: mimalloc keeps them
            # (as `veil mpc run` does for its processes).
            env = dict(os.environ, MIMALLOC_PURGE_DELAY="-1")
            procs.append(subprocess.Popen(cmd + ["dealer", self.config, *options], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            for i, col in enumerate(cols):
                path = os.path.join(work, f"{i}.npy")
                np.save(path, col)
                procs.append(subprocess.Popen(
                    cmd + ["party", self.config, str(i), path, *options], env=env,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            outs = []
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
            shutil.rmtree(work, ignore_errors=True)
        failed = [(i, e) for i, (rc, _, e) in enumerate(outs) if rc != 0]
        if failed:
            who = lambda i: "dealer" if i == 0 else f"party {i - 1}"  # noqa: E731
            raise MpcError("; ".join(f"{who(i)}: {e.strip().splitlines()[-1] if e.strip() else 'failed'}"
                                     for i, e in failed))
        results = [json.loads(o) for rc, o, _ in outs[1:] if o.strip() not in ("", "null")]
        if not results:
            raise MpcError("no party learns results in this session")
        return results[0]
