"""veil.he BFV: TenSEAL's bfv_vector operations, exact results, the client/server split,
and the refusals (budget spent, forged bytes, bad input)."""

import numpy as np
import pytest

import veil
import veil.he as he

T = 1032193  # TenSEAL's tutorial plain modulus (a 20-bit prime ≡ 1 mod 2^14)


@pytest.fixture(scope="module")
def bctx():
    return he.context(he.SCHEME_TYPE.BFV, poly_modulus_degree=8192, plain_modulus=T)


def wrap(x):
    """x modulo T, signed in (−T/2, T/2]."""
    r = int(x) % T
    return r - T if r > T // 2 else r


def test_tenseal_bfv_operations_are_exact(bctx):
    assert isinstance(bctx, he.BFVContext)
    assert bctx.plain_modulus == T and bctx.security == "128-bit"
    x, y = [1, -2, 3, 40000, -5], [7, 8, -9, 30000, 0]
    a, b = he.bfv_vector(bctx, x), he.bfv_vector(bctx, y)
    xa, ya = np.array(x, dtype=object), np.array(y, dtype=object)
    cases = {
        "add": (a + b, xa + ya),
        "sub": (a - b, xa - ya),
        "mul": (a * b, xa * ya),
        "scalar add": (a + 5, xa + 5),
        "scalar rsub": (10 - a, 10 - xa),
        "scalar mul": (a * 3, xa * 3),
        "plain mul": (a * np.array([2, 2, 2, 2, 2]), xa * 2),
        "neg": (-a, -xa),
        "square": (a.square(), xa * xa),
    }
    for name, (vec, want) in cases.items():
        assert vec.decrypt() == [wrap(w) for w in want], name
    assert a.sum().decrypt() == [wrap(sum(x))]
    assert a.dot(b).decrypt() == [wrap(int(xa @ ya))]
    assert a.rotate(1).decrypt() == x[1:] + [0]
    assert len(a) == 5 and a.size() == 5


def test_client_server_split_through_bytes(bctx):
    public = bctx.serialize()
    server = he.bfv_context_from(public)
    assert server.is_public() and bctx.is_private()
    enc = he.bfv_vector(bctx, [3, 4, 5]).serialize()
    on_server = he.bfv_vector_from(server, enc)
    answer = (on_server * on_server + 1).serialize()
    with pytest.raises(veil.HeError, match="secret key"):
        he.bfv_vector_from(server, answer).decrypt()
    assert he.bfv_vector_from(bctx, answer).decrypt() == [10, 17, 26]
    owner = he.bfv_context_from(bctx.serialize(save_secret_key=True))
    assert he.bfv_vector_from(owner, answer).decrypt() == [10, 17, 26]


def test_a_spent_budget_is_refused_not_garbage(bctx):
    v = he.bfv_vector(bctx, [2, 3])
    for _ in range(5):
        v = v * v
    assert v.estimated_noise_budget() == 0.0
    with pytest.raises(veil.HeError, match="noise budget"):
        v.decrypt()


def test_forged_and_bad_input_raise_he_error(bctx):
    public = bctx.serialize()
    for forged in (b"", public[:100], public[:-1], b"VEILPYB1" + b"\xff" * 16):
        with pytest.raises(veil.HeError):
            he.bfv_context_from(forged)
    enc = he.bfv_vector(bctx, [1]).serialize()
    for forged in (enc[:50], enc[:-1], b"\x01\x00\x00\x00VBFV"):
        with pytest.raises(veil.HeError):
            he.bfv_vector_from(bctx, forged)
    with pytest.raises(veil.HeError, match="plaintext range"):
        he.bfv_vector(bctx, [T])
    with pytest.raises(veil.HeError, match="integers"):
        he.bfv_vector(bctx, [1.5])
    with pytest.raises(veil.HeError, match="integers"):
        he.bfv_vector(bctx, [1, "2"])
    with pytest.raises(veil.HeError, match="range"):
        he.bfv_vector(bctx, [2 ** 70])
    with pytest.raises(veil.HeError, match="range"):
        he.bfv_vector(bctx, [1]) * [2 ** 64]
    with pytest.raises(veil.HeError):
        he.bfv_vector(bctx, list(range(8193)))
    with pytest.raises(veil.HeError):
        he.bfv_vector(bctx, [1, 2]) + he.bfv_vector(bctx, [1, 2, 3])
    with pytest.raises(veil.HeError, match="prime"):
        he.context(he.SCHEME_TYPE.BFV, poly_modulus_degree=8192, plain_modulus=65537 * 3)
    with pytest.raises(veil.HeError, match="128-bit"):
        he.context(he.SCHEME_TYPE.BFV, poly_modulus_degree=4096,
                   coeff_mod_bit_sizes=[40, 40, 40], plain_modulus=40961)
    with pytest.raises(veil.HeError):
        he.bfv_vector("not a context", [1])
