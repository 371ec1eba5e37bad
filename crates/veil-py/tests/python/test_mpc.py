"""veil.mpc: three parties and a dealer as processes over mutual TLS; misbehaving inputs."""

import json
import subprocess
import sys

import numpy as np
import pytest

import veil
import veil.mpc as mpc


def test_three_processes_compute_the_joint_statistics():
    rng = np.random.default_rng(5)
    cols = [rng.uniform(0, 100, n) for n in (40, 25, 31)]
    session = mpc.Session.local(parties=3)
    assert session.parties == ["p0", "p1", "p2"]
    r = session.stats(cols, low=0, high=100, bins=10, max_abs=1000, timeout=180)
    everything = np.concatenate(cols)
    assert r["count"] == len(everything)
    assert r["sum"] == pytest.approx(everything.sum(), abs=0.05)
    assert r["mean"] == pytest.approx(everything.mean(), abs=1e-3)
    assert r["variance"] == pytest.approx(everything.var(ddof=1), rel=1e-3)
    assert r["histogram"] == np.histogram(everything, bins=10, range=(0, 100))[0].tolist()


def test_a_value_beyond_the_bound_is_refused_before_anything_is_sent():
    session = mpc.Session.local(parties=2)
    with pytest.raises(veil.MpcError, match="max_abs"):
        session.stats([[1.0, 2.0], [3.0, 5e9]], max_abs=1000)
    with pytest.raises(veil.MpcError):
        session.stats([[1.0], [float("nan")]])
    with pytest.raises(veil.MpcError, match="one column per party"):
        session.stats([[1.0]])
    with pytest.raises(veil.MpcError):
        mpc.party_stats(session.config, 7, [1.0])


def test_a_party_running_another_program_is_refused_at_connection():
    """Party 1 asks for a histogram over another range: the program is part of the session
    hash, so the honest party and the dealer refuse it instead of computing a mix."""
    session = mpc.Session.local(parties=2)
    cmd = [sys.executable, "-m", "veil._mpc_worker"]
    tmp = __import__("tempfile").mkdtemp()
    np.save(f"{tmp}/v.npy", np.array([1.0, 2.0]))
    honest = ["0", "100", "10", "1000.0"]
    other = ["0", "50", "10", "1000.0"]
    procs = [
        subprocess.Popen(cmd + ["dealer", session.config, *honest], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE),
        subprocess.Popen(cmd + ["party", session.config, "0", f"{tmp}/v.npy", *honest],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE),
        subprocess.Popen(cmd + ["party", session.config, "1", f"{tmp}/v.npy", *other],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE),
    ]
    outs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a mismatched party hung the session")
        outs.append((p.returncode, out.decode(), err.decode()))
    assert outs[1][0] != 0 and outs[2][0] != 0, outs
    assert all(o.strip() in ("", "null") or "sum" not in json.loads(o) for _, o, _ in outs[1:])
