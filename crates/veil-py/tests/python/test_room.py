"""veil.tee.Room: a party's client for a data room, against a real room that tests/python.rs
serves on loopback (the shipped `stats` workload on a simulated platform; parties
hospital-a and hospital-b, output to hospital-a only; `impostor.key` holds keys of the name
hospital-a that the manifest does not hold).

The tests run in file order against one room: refusals first, then the whole flow."""

import os
import stat

import numpy as np
import pandas as pd
import pytest

import veil
import veil.tee as tee


@pytest.fixture
def room():
    names = ["VEIL_TEST_ROOM_URL", "VEIL_TEST_ROOM_DIR"]
    missing = [n for n in names if n not in os.environ]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} not set (tests/python.rs serves the room)")
        pytest.skip(f"{missing} not set: run through `cargo test -p veil-py`")
    d = os.environ["VEIL_TEST_ROOM_DIR"]
    keys = {n: tee.PartyKey.load(os.path.join(d, f"{n}.key"))
            for n in ["hospital-a", "hospital-b", "impostor"]}
    return tee.Room(os.environ["VEIL_TEST_ROOM_URL"], os.path.join(d, "room.toml")), keys, d


def test_party_keys_are_saved_privately_and_load_back(tmp_path):
    key = tee.PartyKey.generate("clinic-1")
    secret, public = key.save(tmp_path)
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert tee.PartyKey.load(secret).public_text() == key.public_text()
    assert "clinic-1" in open(public).read()
    # The secret is in neither the public file nor the repr.
    assert "secret" not in open(public).read() and repr(key) == "PartyKey('clinic-1')"
    with pytest.raises(tee.TeeError, match="never overwritten"):
        key.save(tmp_path)
    (tmp_path / "bad.key").write_text("name = 3\n")
    for bad in [tmp_path / "bad.key", tmp_path / "missing.key"]:
        with pytest.raises(tee.TeeError):
            tee.PartyKey.load(bad)
    with pytest.raises(tee.TeeError):
        tee.PartyKey.generate("no spaces or slashes/")
    with pytest.raises(tee.TeeError):
        tee.PartyKey("not a key")


def test_the_room_is_checked_against_the_partys_own_manifest(room):
    r, _, d = room
    assert r.parties == ["hospital-a", "hospital-b"] and r.output_to == ["hospital-a"]
    assert r.input_format == "f64-column" and r.name == "joint study"
    v = r.verify()
    assert v["verified"] and v["room_id"] == r.room_id
    assert v["claims"]["tee"] == "sim"
    # A party whose manifest differs in one byte (another room) refuses this room.
    text = open(os.path.join(d, "room.toml")).read()
    other = tee.Room(r.url, text.replace('name = "joint study"', 'name = "joint study 2"'))
    assert other.room_id != r.room_id
    with pytest.raises(tee.TeeError, match="(?i)room id|manifest"):
        other.verify()
    # Nobody listening, or not a URL.
    with pytest.raises(tee.TeeError):
        tee.Room("http://127.0.0.1:9", text).verify()
    with pytest.raises(tee.TeeError):
        tee.Room("ftp://example", text)
    with pytest.raises(tee.TeeError):
        tee.Room(r.url, "[room]\nname = 1\n")


def test_misbehaving_parties_and_bad_input_are_refused_before_the_run(room):
    r, keys, _ = room
    a, b, impostor = keys["hospital-a"], keys["hospital-b"], keys["impostor"]
    # Keys under a party's name that the manifest does not hold: refused by the client
    # before anything is sent, and the room would refuse the signature anyway.
    with pytest.raises(tee.TeeError, match="not hospital-a's key"):
        r.upload(impostor, np.array([1.0, 2.0]))
    # A request signed with them reaches the room, which checks the signature.
    with pytest.raises(tee.TeeError, match="bad signature"):
        r.run(impostor)
    # The run waits for every party's data; no output exists before it.
    with pytest.raises(tee.TeeError, match="waiting for uploads from hospital-a, hospital-b"):
        r.run(a)
    with pytest.raises(tee.TeeError, match="not run yet"):
        r.output(a)
    # Bad input is a Python exception, never a crash, and nothing is uploaded.
    df = pd.DataFrame({"age": [30.0, 40.0], "weight": [70.0, 80.0]})
    with pytest.raises(tee.TeeError, match="column"):
        r.upload(a, df)
    with pytest.raises(tee.TeeError, match="no column"):
        r.upload(a, df, column="height")
    with pytest.raises(tee.TeeError, match="finite"):
        r.upload(a, pd.DataFrame({"x": ["1", "two"]}))
    with pytest.raises(tee.TeeError, match="1-D"):
        r.upload(a, np.ones((2, 2)))
    with pytest.raises(tee.TeeError):
        r.upload(a, [float("nan")])
    with pytest.raises(tee.TeeError):
        r.upload(a, object())
    with pytest.raises(tee.TeeError, match="PartyKey"):
        r.upload("hospital-a", [1.0])
    audit = r.audit()
    assert not [e for e in audit if e["event"] == "upload"], audit


def test_two_parties_pool_data_and_only_the_recipient_gets_the_output(room):
    r, keys, _ = room
    a, b = keys["hospital-a"], keys["hospital-b"]
    ages_a = pd.DataFrame({"age": [34.0, 51.0, 47.5, 29.0], "weight": [70, 82, 64, 90]})
    ages_b = pd.DataFrame(np.array([[62.0], [38.0], [45.0]]))   # one column named 0
    # A DataFrame made from an array has columns named 0, 1, …: its header is not data.
    with pytest.raises(tee.TeeError, match="2 columns"):
        r.upload(a, pd.DataFrame(np.ones((3, 2))))
    receipt = r.upload(a, ages_a, column="age")
    assert receipt["party"] == "hospital-a" and receipt["label"] == "dataframe"
    assert receipt["room_id"] == r.room_id
    assert r.upload(b, ages_b, label="cohort-b")["label"] == "cohort-b"
    summary = r.run(b)
    assert summary["output_to"] == ["hospital-a"] and summary["output_bytes"] > 0
    out = r.output(a)
    pooled = np.concatenate([ages_a["age"].to_numpy(), ages_b[0].to_numpy()])
    assert out["count"] == len(pooled)
    assert abs(out["mean"] - pooled.mean()) < 1e-9
    assert out["min"] == pooled.min() and out["max"] == pooled.max()
    raw = r.output(a, raw=True)
    assert isinstance(raw, bytes) and len(raw) == summary["output_bytes"]
    # hospital-b gave data but the manifest sends the output to hospital-a only.
    with pytest.raises(tee.TeeError, match="not a recipient"):
        r.output(b)
    events = [e["event"] for e in r.audit()]
    assert events.count("upload") == 2 and "run" in events, events
    assert isinstance(veil.tee.Room, type)
