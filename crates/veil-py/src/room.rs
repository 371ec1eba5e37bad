//! `veil._native.tee.PartyKey` and `RoomClient`: a party's side of a multi-party data room —
//! verify the room's attestation against the party's own manifest, upload data sealed to the
//! attested workload, ask it to run, fetch the output sealed to the party, and check the audit
//! log (the `veil.tee.Room` class wraps them). Every request runs with the GIL released.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use veil_room::InputFormat;

use crate::errors::{tee, TeeError};
use crate::tee::block_on;

/// Adds the data-room classes to the `tee` submodule.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PartyKey>()?;
    m.add_class::<RoomClient>()?;
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| TeeError::new_err(e.to_string()))
}

/// A party's keys for data rooms: an Ed25519 key that signs its requests and an X25519 key its
/// outputs are sealed to. The secret halves are zeroized when the object is freed.
#[pyclass(frozen, module = "veil._native.tee", name = "PartyKey")]
pub struct PartyKey {
    inner: veil_room::PartyKey,
}

#[pymethods]
impl PartyKey {
    /// Fresh keys for the party `name` (letters, digits, `-`, `_`, `.`).
    #[staticmethod]
    fn generate(name: &str) -> PyResult<Self> {
        Ok(Self {
            inner: veil_room::PartyKey::generate(name).map_err(tee)?,
        })
    }

    /// The keys from a secret key file's text (what `to_text` and `veil room keygen` write).
    #[staticmethod]
    fn from_text(text: &str) -> PyResult<Self> {
        let text = zeroize::Zeroizing::new(text.to_string());
        Ok(Self {
            inner: veil_room::PartyKey::from_text(&text).map_err(tee)?,
        })
    }

    /// The secret key file's text: keep it private.
    fn to_text(&self) -> PyResult<String> {
        Ok(self.inner.to_text().map_err(tee)?.to_string())
    }

    /// The public key file's text (`name.pub`) for whoever writes the room's manifest.
    fn public_text(&self) -> PyResult<String> {
        toml::to_string(&self.inner.public()).map_err(|e| TeeError::new_err(e.to_string()))
    }

    /// The party's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn __repr__(&self) -> String {
        format!("PartyKey({:?})", self.inner.name())
    }
}

/// A party's client for the room served at `url` and described by `manifest_text` (the
/// party's own copy of the manifest: what it checks the room against).
#[pyclass(frozen, module = "veil._native.tee", name = "RoomClient")]
pub struct RoomClient {
    inner: veil_server::room::RoomClient,
}

#[pymethods]
impl RoomClient {
    #[new]
    fn new(url: &str, manifest_text: &str) -> PyResult<Self> {
        veil_server::client::install_crypto_provider();
        Ok(Self {
            inner: veil_server::room::RoomClient::new(url, manifest_text).map_err(tee)?,
        })
    }

    /// The room id (hex): the SHA-256 of the manifest.
    #[getter]
    fn room_id(&self) -> String {
        hex::encode(self.inner.room_id())
    }

    /// The room's name.
    #[getter]
    fn name(&self) -> &str {
        &self.inner.manifest().room.name
    }

    /// The parties' names, in the manifest's order.
    #[getter]
    fn parties(&self) -> Vec<String> {
        let m = self.inner.manifest();
        m.parties.iter().map(|p| p.name.clone()).collect()
    }

    /// The parties that receive the output.
    #[getter]
    fn output_to(&self) -> Vec<String> {
        self.inner.manifest().room.output_to.clone()
    }

    /// How a party's table becomes the workload's input: `"f64-column"`,
    /// `"f64-labelled-rows"` or `"raw"`.
    #[getter]
    fn input_format(&self) -> &'static str {
        match self.inner.manifest().code.input {
            InputFormat::F64Column => "f64-column",
            InputFormat::F64LabelledRows => "f64-labelled-rows",
            InputFormat::Raw => "raw",
        }
    }

    /// Checks that the room serves this manifest and that its fresh evidence satisfies it;
    /// returns what was established, as JSON.
    fn verify(&self, py: Python<'_>) -> PyResult<String> {
        let room = py.detach(|| block_on(self.inner.verify()))?.map_err(tee)?;
        json(&serde_json::json!({
            "room_id": hex::encode(room.room_id),
            "verified": true,
            "claims": room.claims,
            "workload_key": hex::encode(&room.workload_key),
            "audit_key": hex::encode(room.audit_key.to_bytes()),
        }))
    }

    /// A CSV table encoded as the workload's input (`column` picks the column of a
    /// one-column input by its header name).
    #[pyo3(signature = (text, column = None))]
    fn encode_csv<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        column: Option<&str>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let format = self.inner.manifest().code.input;
        let bytes = veil_room::encode_csv(format, text, column).map_err(tee)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Verifies the room, then uploads `data` (the workload's input bytes) sealed to its
    /// attested key and signed by `key`; returns the room's checked receipt as JSON.
    fn upload(&self, py: Python<'_>, key: &PartyKey, label: &str, data: &[u8]) -> PyResult<String> {
        let receipt = py
            .detach(|| block_on(self.inner.upload(&key.inner, label, data)))?
            .map_err(tee)?;
        json(&receipt)
    }

    /// Asks the room to run (after every party uploaded); returns its summary as JSON.
    fn run(&self, py: Python<'_>, key: &PartyKey) -> PyResult<String> {
        let summary = py
            .detach(|| block_on(self.inner.run(&key.inner)))?
            .map_err(tee)?;
        json(&summary)
    }

    /// Verifies the room, fetches the output sealed to `key`'s party and opens it.
    fn fetch_output<'py>(&self, py: Python<'py>, key: &PartyKey) -> PyResult<Bound<'py, PyBytes>> {
        let output = py
            .detach(|| block_on(self.inner.fetch_output(&key.inner)))?
            .map_err(tee)?;
        Ok(PyBytes::new(py, &output))
    }

    /// The output as labelled values (`None` when it is not a whole number of f64s).
    fn decode_output(&self, output: &[u8]) -> Option<Vec<(String, f64)>> {
        veil_room::decode_output(self.inner.manifest(), output)
    }

    /// Verifies the room, fetches its audit log for a fresh nonce and checks the chain, every
    /// entry's signature by the attested audit key and the signed head; the entries as JSON.
    fn audit(&self, py: Python<'_>) -> PyResult<String> {
        let entries = py.detach(|| block_on(self.inner.audit()))?.map_err(tee)?;
        json(&entries)
    }

    fn __repr__(&self) -> String {
        format!(
            "RoomClient({:?}, room {})",
            self.inner.manifest().room.name,
            &self.room_id()[..16]
        )
    }
}
