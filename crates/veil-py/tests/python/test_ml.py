"""veil.ml: encrypted inference of the committed digits models, client/server split, attacks."""

import pathlib

import numpy as np
import pytest

import veil
import veil.he as he
import veil.ml as ml

MODELS = pathlib.Path(__file__).resolve().parents[3] / "veil-ml" / "models"


@pytest.fixture(scope="module")
def digits():
    raw = np.loadtxt(MODELS / "digits_test.csv", delimiter=",", skiprows=1)
    return raw[:, 1:] / 16.0, raw[:, 0].astype(int)


@pytest.fixture(scope="module")
def mlp():
    return ml.compile(MODELS / "mlp.onnx", input_range=(0, 1))


def test_encrypted_mlp_agrees_with_plaintext_through_bytes(mlp, digits):
    x, labels = digits
    x = x[:12]
    client_plan = ml.Plan.from_bytes(mlp.client_plan().to_bytes())
    ctx = client_plan.keygen()
    query = client_plan.encrypt(ctx, x).to_bytes()
    server_ctx = he.context_from(ctx.serialize())
    assert server_ctx.is_public()
    answer = mlp.evaluate(ml.Encrypted.from_bytes(server_ctx, query)).to_bytes()
    logits, flood = client_plan.decrypt_with_flood_std(ml.Encrypted.from_bytes(ctx, answer))
    plain = mlp.evaluate_plain(x)
    assert logits.shape == (12, 10)
    assert np.array_equal(logits.argmax(1), plain.argmax(1))
    assert np.max(np.abs(logits - plain)) < 8 * flood + 0.5
    assert (plain.argmax(1) == labels[:12]).mean() >= 0.9
    assert mlp.packing == "single" and mlp.input_len == 64 and mlp.output_len == 10


def test_the_client_plan_carries_no_weight(mlp, digits):
    x, _ = digits
    client = mlp.client_plan()
    assert np.all(client.evaluate_plain(x[:3]) == 0.0)
    assert not np.all(mlp.evaluate_plain(x[:3]) == 0.0)
    assert client.rotation_steps == mlp.rotation_steps


def test_forest_compiles_to_batch_packing(digits):
    """Tree ensembles need batch packing: "auto" picks it, "single" is refused with a reason.
    (Their encrypted accuracy is tested in Rust, crates/veil-ml/tests; a batch evaluation
    takes minutes on two cores.)"""
    x, labels = digits
    forest = ml.compile(MODELS / "forest.onnx")
    assert forest.packing == "batch" and forest.samples_per_evaluation > 1000
    plain = forest.evaluate_plain(x[:60])  # the model's tail (the label) included
    assert plain.shape == (60, 1)
    assert (plain[:, 0] == labels[:60]).mean() >= 0.75
    with pytest.raises(veil.MlError, match="batch"):
        ml.compile(MODELS / "forest.onnx", packing="single")


def test_bad_models_samples_and_bytes_raise(mlp, digits, tmp_path):
    x, _ = digits
    with pytest.raises(veil.MlError):
        ml.compile(b"not an onnx model")
    with pytest.raises(veil.MlError):
        ml.compile(MODELS / "mlp.onnx", packing="sideways")
    ctx = mlp.keygen()
    for bad in (np.ones((2, 63)), np.ones((0, 64)), [[float("nan")] * 64], "pixels"):
        with pytest.raises(veil.MlError):
            mlp.encrypt(ctx, bad)
    data = mlp.to_bytes()
    for forged in (b"", data[:-1], data[:100], data + b"x"):
        with pytest.raises(veil.MlError):
            ml.Plan.from_bytes(forged)
    query = mlp.encrypt(ctx, x[:2]).to_bytes()
    for forged in (b"", query[:-1], query[:50]):
        with pytest.raises(veil.VeilError):
            ml.Encrypted.from_bytes(ctx, forged)
    # A query made under another model's keys is refused, not evaluated into garbage.
    logreg = ml.compile(MODELS / "logreg.onnx")
    other = logreg.keygen()
    with pytest.raises(veil.VeilError):
        mlp.evaluate(ml.Encrypted.from_bytes(other, logreg.encrypt(other, x[:1]).to_bytes()))
    path = tmp_path / "mlp.plan"
    mlp.save(path)
    assert ml.Plan.load(path).to_bytes() == data
