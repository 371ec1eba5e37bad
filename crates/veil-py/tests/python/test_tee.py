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
