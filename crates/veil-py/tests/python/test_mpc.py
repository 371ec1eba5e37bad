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


def test_two_processes_intersect_their_sets_and_the_sender_learns_only_a_size():
    session = mpc.Session.local(parties=2)
    clinic = ["ann@example.org", " Bob@Example.org", "carl@example.org", "dora@example.org"]
    insurer = ["BOB@example.org", "dora@example.org ", "eve@example.org"]
    r = session.psi(clinic, insurer, normalize="trim,casefold,nfkc", timeout=120)
    assert r["role"] == "receiver"
    assert r["intersection"] == ["bob@example.org", "dora@example.org"]
    assert (r["size"], r["other_set_size"]) == (2, 3)
    # Only the size.
    r = session.psi(clinic, insurer, normalize="trim,casefold", cardinality_only=True,
                    timeout=120)
    assert r["intersection"] is None and r["size"] == 2
    # Without case folding, only exact (trimmed) matches.
    r = session.psi(clinic, insurer, timeout=120)
    assert r["intersection"] == ["dora@example.org"]
    # numpy and pandas columns of strings work too.
    pd = pytest.importorskip("pandas")
    r = session.psi(np.array(clinic), pd.Series(insurer), normalize="trim,casefold",
                    timeout=120)
    assert r["size"] == 2


def test_psi_sides_run_as_separate_calls_and_the_sender_gets_no_intersection():
    """Each side as its own process calling `veil.mpc.psi` (how two machines run it): the
    sender's result holds the receiver's set size and nothing else."""
    session = mpc.Session.local(parties=2)
    tmp = __import__("tempfile").mkdtemp()
    for i, items in enumerate([["a", "b", "c"], ["b", "c", "d", "e"]]):
        with open(f"{tmp}/{i}.json", "w") as f:
            json.dump(items, f)
    cmd = [sys.executable, "-m", "veil._mpc_worker", "psi", session.config]
    procs = [subprocess.Popen(cmd + [str(i), f"{tmp}/{i}.json", "trim", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    receiver, sender = (json.loads(o.decode()) for o, _ in outs)
    assert receiver["intersection"] == ["b", "c"]
    assert sender == {"role": "sender", "other_set_size": 3}


def test_psi_sides_with_other_options_are_refused_at_connection():
    """The sender asks for case folding, the receiver does not: matching under different
    rules would silently give another intersection, so both refuse before sending a set."""
    session = mpc.Session.local(parties=2)
    tmp = __import__("tempfile").mkdtemp()
    with open(f"{tmp}/s.json", "w") as f:
        json.dump(["x", "y"], f)
    cmd = [sys.executable, "-m", "veil._mpc_worker", "psi", session.config]
    procs = [
        subprocess.Popen(cmd + ["0", f"{tmp}/s.json", "trim", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE),
        subprocess.Popen(cmd + ["1", f"{tmp}/s.json", "trim,casefold", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE),
    ]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=120))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a mismatched side hung the intersection")
    assert all(p.returncode != 0 for p in procs), outs
    assert all("intersection" not in o.decode() for o, _ in outs)


def test_bad_psi_input_is_a_python_exception():
    pair = mpc.Session.local(parties=2)
    with pytest.raises(veil.MpcError, match="not a str"):
        pair.psi(["a", 3], ["a"])
    with pytest.raises(veil.MpcError, match="not one string"):
        pair.psi("abc", ["a"])
    with pytest.raises(veil.MpcError, match="sequence"):
        pair.psi(5, ["a"])
    with pytest.raises(veil.MpcError, match="2 parties"):
        mpc.Session.local(parties=3).psi(["a"], ["a"])
    with pytest.raises(veil.MpcError):
        mpc.psi(pair.config, 2, ["a"])
    with pytest.raises(veil.MpcError):
        mpc.psi(pair.config, 0, ["a"], normalize="shout")
