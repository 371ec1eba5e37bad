"""Shared fixtures for the Python suite (run by `cargo test -p veil-py`, see tests/python.rs)."""

import pytest

import veil.he as he


@pytest.fixture(scope="session")
def ctx():
    """A depth-2 CKKS context at N = 8192 (TenSEAL's tutorial parameters), keys made once."""
    c = he.context(he.SCHEME_TYPE.CKKS, poly_modulus_degree=8192,
                   coeff_mod_bit_sizes=[60, 40, 40, 60])
    c.global_scale = 2 ** 40
    c.generate_galois_keys()
    return c


PERSONS_METADATA = """
[budget]
epsilon = 10.0
delta = 1e-5

[table.persons]
privacy_unit = "person_id"
max_rows_per_unit = 1

[table.persons.columns]
person_id = { type = "int" }
age = { type = "int", lower = 0, upper = 100 }
income = { type = "float", lower = 0, upper = 500000 }
sex = { type = "string", public_keys = ["F", "M"] }
state = { type = "string" }
"""


@pytest.fixture
def persons():
    """A synthetic persons DataFrame (one row per person) with known true answers."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    n = 5000
    return pd.DataFrame({
        "person_id": np.arange(1, n + 1),
        "age": rng.integers(18, 91, n),
        "income": np.round(rng.lognormal(10.4, 0.7, n), 2),
        "sex": rng.choice(["F", "M"], n),
        "state": rng.choice(["CA", "TX", "NY"], n, p=[0.5, 0.3, 0.2]),
    })
