"""veil.tee: evidence verification, with the recorded real quotes and the simulated TEE."""

import os
import pathlib

import pytest

import veil
import veil.tee as tee

# The recorded evidence committed with veil-attest's tests (see its NOTICE).
VECTORS = pathlib.Path(__file__).resolve().parents[3] / "veil-attest" / "tests" / "vectors"


def vector(name):
    p = VECTORS / name
    if not p.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{p} is missing")
        pytest.skip(f"{p} is missing")
    return p.read_bytes()


def test_simulated_evidence_verifies_only_against_its_platform_and_untampered():
    platform = tee.SimulatedTee(seed=b"\x01" * 32)
    evidence = platform.issue(b"\xaa" * 48, b"\x05" * 64, svn=3)
    assert tee.evidence_kind(evidence) == "simulated"
    claims = tee.verify(evidence, sim_platform_key=platform.public_key())
    assert claims["tee"] == "sim"
    assert claims["measurements"]["measurement"] == "aa" * 48
    assert claims["report_data"] == "05" * 64 and claims["security_version"] == 3
    other = tee.SimulatedTee()
    with pytest.raises(veil.TeeError):
        tee.verify(evidence, sim_platform_key=other.public_key())
    for at in (10, len(evidence) // 2, len(evidence) - 1):
        forged = bytearray(evidence)
        forged[at] ^= 1
        with pytest.raises(veil.TeeError):
            tee.verify(bytes(forged), sim_platform_key=platform.public_key())
    with pytest.raises(veil.TeeError, match="sim_platform_key"):
        tee.verify(evidence)
    with pytest.raises(veil.TeeError):
        platform.issue(b"short", b"\x00" * 64)


def test_real_sgx_quote_verifies_in_its_window_and_not_after():
    quote = vector("dcap/sgx_quote")
    collateral = vector("dcap/sgx_quote_collateral.json").decode()
    assert tee.evidence_kind(quote) == "sgx"
    claims = tee.verify(quote, collateral=collateral, at="2025-07-01")
    assert claims["tee"] == "sgx"
    assert claims["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    assert len(claims["measurements"]["mr_enclave"]) == 64
    # The audit's attack: the same evidence at a later date, its CRL expired, is refused.
    with pytest.raises(veil.TeeError):
        tee.verify(quote, collateral=collateral, at="2027-01-01")
    with pytest.raises(veil.TeeError, match="collateral"):
        tee.verify(quote, at="2025-07-01")
    forged = bytearray(quote)
    forged[100] ^= 0xFF
    with pytest.raises(veil.TeeError):
        tee.verify(bytes(forged), collateral=collateral, at="2025-07-01")


def test_snp_report_verifies_with_its_vcek_only():
    report = vector("trustee/snp-test-report.bin")
    vcek = vector("trustee/snp-test-vcek.der")
    vlek = vector("trustee/snp-test-vlek.der")
    claims = tee.verify(report, vcek=vcek, at="2025-07-01")
    assert claims["tee"] == "snp" and claims["signing_key"] == "vcek"
    with pytest.raises(veil.TeeError):
        tee.verify(report, vlek=vlek, at="2025-07-01")
    with pytest.raises(veil.TeeError, match="snp_min_tcb"):
        tee.verify(report, vcek=vcek, at="2025-07-01", snp_min_tcb="nonsense")


def test_garbage_and_bad_arguments_raise_tee_error(tmp_path):
    for junk in (b"", b"\x00" * 10, b"not evidence at all" * 50):
        with pytest.raises(veil.TeeError):
            tee.verify(junk, sim_platform_key=b"\x00" * 32)
    with pytest.raises(veil.TeeError):
        tee.verify(tmp_path / "missing.bin")
    with pytest.raises(veil.TeeError):
        tee.verify(b"x", at="yesterday")


# ----- the attestation service and key broker clients -----
# tests/python.rs serves both on loopback: the simulated platform of seed VEIL_TEST_SIM_SEED
# is trusted, measurement VEIL_TEST_SIM_MEASUREMENT at security version >= 2 gets tokens, the
# broker holds `model-key` for it and `other-key` for another workload.


@pytest.fixture
def services():
    names = ["VEIL_TEST_ATTEST_URL", "VEIL_TEST_KBS_URL", "VEIL_TEST_SIM_SEED",
             "VEIL_TEST_SIM_MEASUREMENT"]
    missing = [n for n in names if n not in os.environ]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} not set (tests/python.rs serves the TEE services)")
        pytest.skip(f"{missing} not set: run through `cargo test -p veil-py`")
    env = {n: os.environ[n] for n in names}
    platform = tee.SimulatedTee(seed=bytes.fromhex(env["VEIL_TEST_SIM_SEED"]))
    return env["VEIL_TEST_ATTEST_URL"], env["VEIL_TEST_KBS_URL"], platform, \
        bytes.fromhex(env["VEIL_TEST_SIM_MEASUREMENT"])


def test_a_workload_gets_its_secret_through_attestation(services):
    attest_url, kbs_url, platform, good = services
    key = tee.WorkloadKey()
    secret = tee.fetch_secret(attest_url, kbs_url, "model-key", key=key,
                              evidence=lambda rd: platform.issue(good, rd, svn=2))
    assert secret == b"the model key"
    # Step by step, with runtime data bound too; the token's claims name the workload.
    n = tee.nonce(attest_url)
    rd = tee.report_data(n, key.public_key(), b"config v1")
    r = tee.attest(attest_url, platform.issue(good, rd, svn=2), nonce=n,
                   public_key=key.public_key(), runtime_data=b"config v1")
    assert r["claims"]["measurements"]["measurement"] == good.hex()  # flattened evidence claims
    released = tee.release(kbs_url, "model-key", r["token"])
    assert key.open(released) == b"the model key"
    # The key survives a round trip through its private bytes.
    assert tee.WorkloadKey(key.private_key()).open(released) == b"the model key"


def test_the_services_refuse_what_a_misbehaving_workload_tries(services):
    attest_url, kbs_url, platform, good = services
    key = tee.WorkloadKey()
    pk = key.public_key()

    def token(measurement=good, svn=2, bind_key=pk, nonce=None, reuse=None):
        n = reuse or nonce or tee.nonce(attest_url)
        ev = platform.issue(measurement, tee.report_data(n, bind_key), svn=svn)
        return n, tee.attest(attest_url, ev, nonce=n, public_key=pk)["token"]

    # Another measurement, or an old security version: no token.
    with pytest.raises(veil.TeeError):
        token(measurement=b"\x22" * 48)
    with pytest.raises(veil.TeeError):
        token(svn=1)
    # A nonce is single use: replaying the first request is refused.
    n, t = token()
    with pytest.raises(veil.TeeError):
        token(reuse=n)
    # Evidence that binds another key than the one presented: refused.
    with pytest.raises(veil.TeeError):
        token(bind_key=tee.WorkloadKey().public_key())
    # Evidence from another platform (not the trusted one): refused.
    n2 = tee.nonce(attest_url)
    stranger = tee.SimulatedTee(seed=b"\x07" * 32)
    with pytest.raises(veil.TeeError):
        tee.attest(attest_url, stranger.issue(good, tee.report_data(n2, pk), svn=2), nonce=n2,
                   public_key=pk)
    # The token does not open another workload's secret, nor survives tampering.
    with pytest.raises(veil.TeeError):
        tee.release(kbs_url, "other-key", t)
    head, payload, sig = t.split(".")
    forged = ".".join([head, payload, ("A" if sig[0] != "A" else "B") + sig[1:]])
    with pytest.raises(veil.TeeError):
        tee.release(kbs_url, "model-key", forged)
    # What is released is sealed to the attested key: another key cannot open it.
    released = tee.release(kbs_url, "model-key", t)
    with pytest.raises(veil.TeeError):
        tee.WorkloadKey().open(released)
    assert key.open(released) == b"the model key"


def test_bad_client_input_is_a_python_exception(services):
    attest_url, kbs_url, _, _ = services
    with pytest.raises(veil.TeeError, match="URL"):
        tee.nonce("attest.example")
    with pytest.raises(veil.TeeError):
        tee.report_data("not base64!", b"\x00" * 32)
    with pytest.raises(veil.TeeError):
        tee.WorkloadKey(b"short")
    with pytest.raises(veil.TeeError):
        tee.WorkloadKey().open("{}")
    with pytest.raises(veil.TeeError):
        tee.WorkloadKey().open(42)
    with pytest.raises(veil.TeeError, match="WorkloadKey"):
        tee.fetch_secret(attest_url, kbs_url, "model-key", key=b"k", evidence=lambda rd: rd)
    # Nothing listens there: an error, not a hang or a crash.
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(veil.TeeError):
        tee.nonce(f"http://127.0.0.1:{port}")
