"""veil.he: a TenSEAL user's operations, the client/server split, and bad input."""

import threading
import time

import numpy as np
import pytest

import veil
import veil.he as he


def close(vec, want):
    """Decrypts `vec` and checks it against `want` within the flooding noise it reports
    (8 standard deviations) plus CKKS's own error."""
    got, std = vec.decrypt_with_flood_std()
    want = np.asarray(want, dtype=float)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.max(np.abs(got - want)) if got.size else 0.0
    tol = 8 * std + 1e-4
    assert err <= tol, f"error {err} > {tol}: {got} vs {want}"


def test_tenseal_tutorial_operations(ctx):
    v1, v2 = [0.0, 1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0, 0.0]
    a, b = he.ckks_vector(ctx, v1), he.ckks_vector(ctx, v2)
    x, y = np.array(v1), np.array(v2)
    close((a + b), x + y)
    close((a - b), x - y)
    close((a * b), x * y)
    close((a + 2), x + 2)
    close((3 - a), 3 - x)
    close((a * [1.0, 2.0, 3.0, 4.0, 5.0]), x * [1, 2, 3, 4, 5])
    close((-a), -x)
    close(a.dot(b), [x @ y])
    close(a.dot(y), [x @ y])
    close(a.sum(), [x.sum()])
    close(a.square(), x * x)
    close((a ** 2), x ** 2)
    close(a.polyval([1.0, 0.5, 0.25]), 1 + 0.5 * x + 0.25 * x * x)
    m = np.arange(15, dtype=float).reshape(5, 3) / 10
    close(a.mm(m), x @ m)
    close((a @ m), x @ m)
    close(a.rotate(1), np.roll(x, -1))
    c = he.ckks_vector(ctx, v1)
    c += 1
    c *= b
    close(c, (x + 1) * y)
    assert len(a) == a.size() == 5
    assert isinstance(a.decrypt(), np.ndarray)


def test_decryption_is_flooded_and_within_the_stated_noise(ctx):
    x = np.linspace(-1, 1, 4096)
    v = he.ckks_vector(ctx, x)
    values, std = (v * v).decrypt_with_flood_std()
    assert std > 0
    assert np.max(np.abs(values - x * x)) < 8 * std + 1e-6
    exact = (v * v).decrypt_unflooded_for_key_holder_only()
    assert np.max(np.abs(exact - x * x)) < 1e-6
    # Two decryptions of the same ciphertext differ: fresh flooding noise each time.
    w = v * v
    assert not np.array_equal(w.decrypt(), w.decrypt())


def test_client_server_round_trip_through_bytes(ctx):
    # Client: encrypts and sends the public context and the vector.
    public = ctx.serialize(save_secret_key=False)
    query = he.ckks_vector(ctx, [1.0, 2.0, 3.0]).serialize()
    # Server: computes without the secret key and cannot decrypt.
    server_ctx = he.context_from(public)
    assert server_ctx.is_public()
    v = he.ckks_vector_from(server_ctx, query)
    out = (v * [0.5, 0.5, 0.5] + 1).serialize()
    with pytest.raises(veil.HeError, match="secret key"):
        v.decrypt()
    # Client: decrypts the answer.
    close(he.ckks_vector_from(ctx, out), [1.5, 2.0, 2.5])
    # A full copy with the secret key decrypts too.
    private = he.context_from(ctx.serialize(save_secret_key=True))
    assert private.is_private()
    close(he.ckks_vector_from(private, out), [1.5, 2.0, 2.5])


def test_make_context_public_stops_decryption_in_place():
    c = he.context_from_preset("n4096-depth1")
    v = he.ckks_vector(c, [1.0])
    c.make_context_public()
    with pytest.raises(veil.HeError, match="secret key"):
        v.decrypt()
    with pytest.raises(veil.HeError, match="no secret key"):
        c.serialize(save_secret_key=True)


def test_insecure_parameters_are_refused_unless_named():
    with pytest.raises(veil.HeError, match="128"):
        he.context(poly_modulus_degree=4096, coeff_mod_bit_sizes=[60, 40, 60]).generate_galois_keys()
    c = he.context(poly_modulus_degree=4096, coeff_mod_bit_sizes=[60, 40, 60],
                   insecure_allow_below_128_bit_security=True)
    assert c.security == "insecure"
    # The public bytes of an insecure context are refused by a receiver that did not opt in.
    with pytest.raises(veil.HeError):
        he.context_from(c.serialize())
    assert he.context_from(c.serialize(), insecure_allow_below_128_bit_security=True).is_public()


@pytest.mark.parametrize("bad", [
    "abc", [[1.0, 2.0], [3.0, 4.0]], [float("nan")], [float("inf")], [object()],
])
def test_bad_values_raise_he_error(ctx, bad):
    with pytest.raises(veil.HeError):
        he.ckks_vector(ctx, bad)


def test_bad_operands_raise_he_error(ctx):
    a = he.ckks_vector(ctx, [1.0, 2.0, 3.0])
    with pytest.raises(veil.HeError):
        a + he.ckks_vector(ctx, [1.0, 2.0])          # lengths differ
    with pytest.raises(veil.HeError):
        a * [1.0, 2.0]                               # plain operand too short
    with pytest.raises(veil.HeError):
        a.mm(np.ones((2, 2)))                        # rows ≠ length
    with pytest.raises(veil.HeError):
        a.mm(np.ones(3))                             # not a matrix
    with pytest.raises(veil.HeError):
        he.ckks_vector(ctx, np.zeros(ctx.slots + 1))  # more than the slots
    with pytest.raises(veil.HeError):
        a ** 0
    with pytest.raises(veil.HeError):
        a * float("nan")
    other = he.context_from_preset("n4096-depth1")
    with pytest.raises(veil.HeError):
        a + he.ckks_vector(other, [1.0, 2.0, 3.0])   # another context's vector


def test_depth_exhaustion_is_an_error_not_a_crash(ctx):
    v = he.ckks_vector(ctx, [0.5, 0.5])
    with pytest.raises(veil.HeError):
        for _ in range(ctx.max_level + 2):
            v = v * v


def test_forged_bytes_are_refused(ctx):
    data = bytearray(he.ckks_vector(ctx, [1.0, 2.0]).serialize())
    for forged in (b"", bytes(data[:-1]), bytes(data[:40]), b"\x00" * len(data),
                   bytes(data) + b"x"):
        with pytest.raises(veil.HeError):
            he.ckks_vector_from(ctx, forged)
    for at in (1, 2, 3, 4):  # the length (beyond the slots) and the layout flag
        flipped = bytearray(data)
        flipped[at] ^= 0xFF
        with pytest.raises(veil.HeError):
            he.ckks_vector_from(ctx, bytes(flipped))
    public = ctx.serialize()
    for forged in (b"", public[:100], public[:-1], b"VEILPYC1" + b"\xff" * 16):
        with pytest.raises(veil.HeError):
            he.context_from(forged)


def test_scale_is_fixed_once_keys_exist(ctx):
    with pytest.raises(veil.HeError, match="fixed"):
        ctx.global_scale = 2 ** 30
    with pytest.raises(veil.HeError, match="preset"):
        he.context_from_preset("n3-depth99")
    with pytest.raises(veil.HeError):
        he.ckks_vector("not a context", [1.0])


def test_long_operations_release_the_gil(ctx):
    """Another Python thread keeps running while a homomorphic operation runs."""
    x = he.ckks_vector(ctx, np.linspace(-1, 1, 4096))
    # How fast this thread counts on its own.
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.05:
        n += 1
    rate = n / (time.perf_counter() - t0)
    done = threading.Event()

    def work():
        for _ in range(30):
            x.polyval([0.1, 0.2, 0.3, 0.4])
        done.set()

    worker = threading.Thread(target=work)
    count, start = 0, time.perf_counter()
    worker.start()
    while not done.is_set():
        count += 1
    worker.join()
    elapsed = time.perf_counter() - start
    # Holding the GIL in the native calls would leave this thread only the gaps between
    # calls (a few switch intervals); released, it counts for most of the time.
    assert count > 0.25 * rate * elapsed, (count, rate, elapsed)
