//! The room's side: launch or resume, attest, accept uploads, run, release outputs, audit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use veil_attest::audit::AuditLog;
use veil_attest::error::{Result, TeeError};
use veil_attest::evidence::sim::SimulatedPlatform;
use veil_attest::util::{decode_b64, encode_b64, system_clock, Clock};
use veil_kbs::{seal_to, ReleasedSecret, WorkloadKeyPair};

use crate::manifest::*;
use crate::protocol::*;
use crate::store;
use crate::workload::{LaunchedWorkload, SealedUpload, Workload};

pub(crate) struct StoredUpload {
    pub(crate) label: String,
    pub(crate) data_sha256: String,
    /// The upload record (who, what, salt ‖ data) sealed to the workload's measurement: the
    /// bytes of its file in the state directory.
    pub(crate) sealed: Vec<u8>,
}

/// A room's state as [`RoomServer::status`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomStatus {
    /// The room id (hex).
    pub room_id: String,
    /// The manifest's room name.
    pub name: String,
    /// The parties, in manifest order.
    pub parties: Vec<PartyStatus>,
    /// Whether the workload ran (its outputs are sealed and waiting).
    pub ran: bool,
    /// Entries in the room's audit log.
    pub audit_entries: u64,
}

/// One party in a [`RoomStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyStatus {
    /// The party's name.
    pub name: String,
    /// Whether its upload was accepted.
    pub uploaded: bool,
}

#[derive(Default)]
pub(crate) struct RoomState {
    pub(crate) uploads: BTreeMap<String, StoredUpload>,
    pub(crate) outputs: Option<(BTreeMap<String, ReleasedSecret>, String)>,
}

/// The room's side, running in the (simulated) TEE.
pub struct RoomServer {
    pub(crate) manifest: Manifest,
    pub(crate) manifest_text: String,
    pub(crate) room_id: [u8; 32],
    pub(crate) platform: SimulatedPlatform,
    pub(crate) launched: LaunchedWorkload,
    pub(crate) audit_signer: SigningKey,
    pub(crate) audit: AuditLog,
    pub(crate) state: Mutex<RoomState>,
    pub(crate) clock: Clock,
    pub(crate) store: Option<store::Store>,
    pub(crate) resumed: bool,
}

impl std::fmt::Debug for RoomServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomServer")
            .field("room_id", &hex::encode(self.room_id))
            .field("name", &self.manifest.room.name)
            .finish_non_exhaustive()
    }
}

/// The manifest, room id and compiled workload, checked to have the manifest's measurement.
pub(crate) fn prepare(
    manifest_text: &str,
    module: &[u8],
) -> Result<(Manifest, [u8; 32], Workload)> {
    let manifest = Manifest::parse(manifest_text)?;
    let room_id = room_id(manifest_text);
    let workload = Workload::new(module, manifest.code.launch.clone())?;
    let measurement = hex::encode(workload.measurement());
    if measurement != manifest.code.measurement {
        return Err(refused(format!(
            "the module's measurement {measurement} differs from the manifest's {}",
            manifest.code.measurement
        )));
    }
    Ok((manifest, room_id, workload))
}

pub(crate) fn named(path: &Path, why: impl std::fmt::Display) -> TeeError {
    store::storage(format!("{}: {why}", path.display()))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|_| TeeError::Internal("state record is not JSON"))
}

impl RoomServer {
    /// Launches the room described by `manifest_text` with `module` (binary or text
    /// WebAssembly) on `platform`. The module must have the manifest's measurement. The audit
    /// log goes to `audit_path`, which must not exist yet (a room's log starts at its launch
    /// and is signed by a key that lives only as long as the launch); `None` keeps it in
    /// memory. Uploads and outputs live in memory only: a restart loses them. Use
    /// [`RoomServer::open`] for a room that survives restarts.
    pub fn launch(
        manifest_text: &str,
        module: &[u8],
        platform: SimulatedPlatform,
        security_version: u16,
        audit_path: Option<&Path>,
    ) -> Result<Self> {
        let (manifest, room_id, workload) = prepare(manifest_text, module)?;
        let audit_signer = SigningKey::from_bytes(&Zeroizing::new(random::<32>()?));
        let audit_public = audit_signer.verifying_key().to_bytes();
        let audit = match audit_path {
            Some(p) if p.exists() => {
                return Err(TeeError::Audit(format!(
                    "{} exists: a room's audit log starts at its launch (choose a new file, \
                     or keep the room's state in a directory that survives restarts)",
                    p.display()
                )))
            }
            Some(p) => AuditLog::open(p)?,
            None => AuditLog::in_memory(),
        }
        .with_signer(audit_signer.clone());
        let launched = LaunchedWorkload::launch(
            workload,
            &platform,
            security_version,
            b"launch",
            &runtime_data(&room_id, &audit_public),
        );
        let room = Self {
            manifest,
            manifest_text: manifest_text.to_string(),
            room_id,
            platform,
            launched,
            audit_signer,
            audit,
            state: Mutex::new(RoomState::default()),
            clock: system_clock(),
            store: None,
            resumed: false,
        };
        room.log_created()?;
        Ok(room)
    }

    /// Launches the room keeping its state in `state_dir`, or resumes the room whose state
    /// `state_dir` holds, so that a restart (a crash, `kill -9`, a reboot) loses nothing the
    /// room acknowledged.
    ///
    /// The directory holds the room's audit and HPKE keys sealed to the workload's
    /// measurement on `platform`, the signed audit log (synced after every entry) and the
    /// room's signed head of it, every accepted upload sealed to the measurement, and the
    /// run's outputs. Each is on disk before the receipt or answer it backs is returned.
    ///
    /// Resuming unseals the keys (refused for another manifest, measurement or platform),
    /// verifies the log (chain, every entry signed by the room's key, not shorter than the
    /// room's last signed head), checks every upload and the outputs against the entries
    /// that record them, and logs `resumed`. A file that is tampered with, swapped, missing
    /// while the log records it, or a log that is cut, stops the room with an error naming
    /// the file: it never starts without a party's data. Temporary files a crash left
    /// half-written are removed; an upload written but never logged (so never acknowledged)
    /// is discarded and logged as `upload_discarded`; outputs computed but not yet logged
    /// are kept and their `run` entry written.
    ///
    /// Not detected: the whole directory replaced by an older copy of itself (rollback needs
    /// a monotonic counter the platform keeps).
    pub fn open(
        manifest_text: &str,
        module: &[u8],
        platform: SimulatedPlatform,
        security_version: u16,
        state_dir: &Path,
    ) -> Result<Self> {
        let (manifest, room_id, workload) = prepare(manifest_text, module)?;
        let store = store::Store::open(state_dir)?;
        if store.path(store::META).exists() {
            return Self::resume(
                manifest,
                manifest_text,
                workload,
                platform,
                security_version,
                store,
            );
        }
        // A fresh room. A crash while one was being created leaves at most the log's first
        // entry and its head (room.json is written last, and the room served nothing before
        // it): start over. Anything else without room.json is not ours to overwrite.
        let names = store.names()?;
        let log_path = store.path(store::AUDIT);
        let creation_only = names.iter().all(|n| n == store::AUDIT || n == store::HEAD)
            && (!log_path.exists()
                || std::fs::read(&log_path)
                    .map(|t| t.iter().filter(|b| **b == b'\n').count() <= 1)
                    .unwrap_or(false));
        if !creation_only {
            return Err(store::storage(format!(
                "{} holds {} but no {}: not this room's state, or its {} was removed; \
                 refusing to start a new room over it (use an empty directory)",
                store.dir().display(),
                names.join(", "),
                store::META,
                store::META
            )));
        }
        for name in [store::AUDIT, store::HEAD] {
            let path = store.path(name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| named(&path, e))?;
            }
        }
        let audit_signer = SigningKey::from_bytes(&Zeroizing::new(random::<32>()?));
        let audit_public = audit_signer.verifying_key().to_bytes();
        let key = WorkloadKeyPair::generate();
        let keys = store::SealedKeys {
            room_id: hex::encode(room_id),
            audit_secret: hex::encode(Zeroizing::new(audit_signer.to_bytes()).as_ref()),
            workload_secret: hex::encode(key.private_bytes().as_slice()),
        };
        let workload_key = key.public_bytes();
        let launched = LaunchedWorkload::launch_with_key(
            workload,
            key,
            &platform,
            security_version,
            b"launch",
            &runtime_data(&room_id, &audit_public),
        );
        let meta = store::RoomMeta {
            version: store::STATE_VERSION,
            room_id: hex::encode(room_id),
            manifest_sha256: hex::encode(Sha256::digest(manifest_text.as_bytes())),
            measurement: manifest.code.measurement.clone(),
            platform_key: hex::encode(platform.public_key()),
            audit_key: hex::encode(audit_public),
            workload_key: hex::encode(workload_key),
            sealed_keys: hex::encode(launched.seal(&to_json(&keys)?)?),
        };
        drop(keys);
        let audit = AuditLog::open(&log_path)?
            .durable()
            .with_signer(audit_signer.clone());
        store.sync()?;
        let room = Self {
            manifest,
            manifest_text: manifest_text.to_string(),
            room_id,
            platform,
            launched,
            audit_signer,
            audit,
            state: Mutex::new(RoomState::default()),
            clock: system_clock(),
            store: Some(store),
            resumed: false,
        };
        room.log_created()?;
        if let Some(store) = &room.store {
            store.write(store::META, &to_json(&meta)?)?;
        }
        Ok(room)
    }

    pub(crate) fn log_created(&self) -> Result<()> {
        self.log(
            "room_created",
            json!({
                "room_id": hex::encode(self.room_id),
                "name": self.manifest.room.name,
                "manifest_sha256": hex::encode(Sha256::digest(self.manifest_text.as_bytes())),
                "measurement": self.manifest.code.measurement,
                "parties": self.manifest.parties.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "output_to": self.manifest.room.output_to,
                "platform_key": hex::encode(self.platform.public_key()),
                "audit_key": hex::encode(self.audit_key()),
                "workload_key": hex::encode(self.launched.public_key()),
                "state": if self.store.is_some() { "directory" } else { "memory" },
            }),
        )
    }

    /// Appends an entry to the log and, with a state directory, writes the room's signed head
    /// of it (so a log cut later is detected on resume). Callers hold the state lock, so heads
    /// are written in order. A decision must not be acted on if this fails.
    pub(crate) fn log(&self, event: &str, details: serde_json::Value) -> Result<()> {
        let now = (self.clock)();
        self.audit.append(now, event, details)?;
        if let Some(store) = &self.store {
            let head = self.audit.signed_head(now)?;
            store.write(store::HEAD, &to_json(&head)?)?;
        }
        Ok(())
    }

    /// Whether [`RoomServer::open`] resumed a room from its state directory (rather than
    /// launching a new one).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Whether the room keeps its state in a directory ([`RoomServer::open`]).
    pub fn state_dir(&self) -> Option<&Path> {
        self.store.as_ref().map(store::Store::dir)
    }

    /// Uses `clock` for request times and log entries.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The room id.
    pub fn room_id(&self) -> [u8; 32] {
        self.room_id
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The audit log.
    pub fn audit_log(&self) -> &AuditLog {
        &self.audit
    }

    /// What the room holds now, for an operator: which parties have uploaded and whether it
    /// ran. Nothing about the data (not even its hash, which would confirm a guess).
    pub fn status(&self) -> Result<RoomStatus> {
        let state = self.lock()?;
        Ok(RoomStatus {
            room_id: hex::encode(self.room_id),
            name: self.manifest.room.name.clone(),
            parties: self
                .manifest
                .parties
                .iter()
                .map(|p| PartyStatus {
                    name: p.name.clone(),
                    uploaded: state.uploads.contains_key(&p.name),
                })
                .collect(),
            ran: state.outputs.is_some(),
            audit_entries: self.audit.len(),
        })
    }

    /// The audit key (Ed25519 public key).
    pub fn audit_key(&self) -> [u8; 32] {
        self.audit_signer.verifying_key().to_bytes()
    }

    pub(crate) fn lock(&self) -> Result<std::sync::MutexGuard<'_, RoomState>> {
        self.state
            .lock()
            .map_err(|_| TeeError::Internal("room state poisoned"))
    }

    /// `GET /room`.
    pub fn info(&self) -> RoomInfo {
        RoomInfo {
            room_id: hex::encode(self.room_id),
            manifest: self.manifest_text.clone(),
        }
    }

    /// Evidence for a verifier's nonce.
    pub fn attest(&self, req: &NonceRequest) -> Result<RoomEvidence> {
        let nonce = decode_nonce(&req.nonce)?;
        let evidence = self.launched.attest(
            &self.platform,
            &nonce,
            &runtime_data(&self.room_id, &self.audit_key()),
        );
        let _guard = self.lock()?;
        self.log(
            "attestation",
            json!({ "nonce_sha256": hex::encode(Sha256::digest(&nonce)) }),
        )?;
        Ok(RoomEvidence {
            evidence: encode_b64(&evidence),
            workload_key: encode_b64(&self.launched.public_key()),
            audit_key: encode_b64(&self.audit_key()),
        })
    }

    /// Accepts an upload (`header length (u32 BE) ‖ header JSON ‖ ciphertext`).
    pub fn upload(&self, body: &[u8]) -> Result<Receipt> {
        let (header, ciphertext) = split_upload(body)?;
        let ours = hex::encode(self.room_id);
        if header.room_id != ours {
            return Err(refused(format!(
                "the upload is for room {}, not this room {ours}: replayed into another room",
                short(&header.room_id)
            )));
        }
        let party = self.manifest.party(&header.party)?;
        check_sig(
            &verifying_key("signing_key", &party.signing_key)?,
            &header.message(),
            &header.signature,
            &format!("upload by {}", header.party),
        )?;
        if hex::encode(Sha256::digest(ciphertext)) != header.ciphertext_sha256 {
            return Err(refused("the ciphertext does not match the signed header"));
        }
        if header.wrapped_key.name != upload_label(&self.room_id, &header.party, &header.label) {
            return Err(refused(
                "the upload's key is labelled for another room or party",
            ));
        }
        let nonce: [u8; 12] = hex::decode(&header.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| bad("upload nonce must be 12 bytes of hex"))?;
        {
            let state = self.lock()?;
            if state.outputs.is_some() {
                return Err(TeeError::RoomState("the room already ran".into()));
            }
            if state.uploads.contains_key(&header.party) {
                return Err(TeeError::RoomState(format!(
                    "{} already uploaded (one dataset per party)",
                    header.party
                )));
            }
        }
        let plain = self.launched.open_upload(&SealedUpload {
            wrapped_key: header.wrapped_key.clone(),
            nonce,
            ciphertext: ciphertext.to_vec(),
        })?;
        let data_sha256 = hex::encode(Sha256::digest(plain.as_slice()));
        if data_sha256 != header.data_sha256 {
            return Err(refused("the decrypted data does not match the signed hash"));
        }
        if plain.len() < SALT_LEN {
            return Err(refused("the upload is shorter than its salt"));
        }
        let record = store::upload_record(
            &store::UploadMeta {
                room_id: ours.clone(),
                party: header.party.clone(),
                label: header.label.clone(),
                data_sha256: data_sha256.clone(),
            },
            &plain,
        )?;
        drop(plain);
        let sealed = self.launched.seal(&record)?;
        drop(record);
        let mut state = self.lock()?;
        if state.outputs.is_some() || state.uploads.contains_key(&header.party) {
            return Err(TeeError::RoomState(format!(
                "{} already uploaded, or the room already ran",
                header.party
            )));
        }
        // On disk before the log entry and the receipt: an acknowledged upload survives a
        // crash (a file without its entry was never acknowledged; see `open`).
        if let Some(store) = &self.store {
            store.write_upload(&header.party, &sealed)?;
        }
        self.log(
            "upload",
            json!({
                "party": header.party,
                "label": header.label,
                "data_sha256": data_sha256,
                "bytes": ciphertext.len().saturating_sub(16),
            }),
        )?;
        state.uploads.insert(
            header.party.clone(),
            StoredUpload {
                label: header.label.clone(),
                data_sha256: data_sha256.clone(),
                sealed,
            },
        );
        let mut receipt = Receipt {
            room_id: ours,
            party: header.party,
            label: header.label,
            data_sha256,
            signature: String::new(),
        };
        receipt.signature = hex::encode(self.audit_signer.sign(&receipt.message()).to_bytes());
        Ok(receipt)
    }

    pub(crate) fn check_request(&self, req: &SignedRequest, action: &str) -> Result<()> {
        if req.action != action {
            return Err(bad(format!(
                "expected a {action} request, got {}",
                req.action
            )));
        }
        if req.room_id != hex::encode(self.room_id) {
            return Err(refused(format!(
                "the request is for room {}, not this one",
                short(&req.room_id)
            )));
        }
        let party = self.manifest.party(&req.party)?;
        let now = (self.clock)();
        if req.time.abs_diff(now) > REQUEST_WINDOW {
            return Err(refused(format!(
                "request time {} is more than {REQUEST_WINDOW} s from the room's clock {now}",
                req.time
            )));
        }
        check_sig(
            &verifying_key("signing_key", &party.signing_key)?,
            &req.message(),
            &req.signature,
            &format!("{action} request by {}", req.party),
        )
    }

    /// Runs the workload on every party's upload, in manifest order; seals the output to each
    /// recipient.
    pub fn run(&self, req: &SignedRequest) -> Result<RunSummary> {
        self.check_request(req, "run")?;
        let mut state = self.lock()?;
        if state.outputs.is_some() {
            return Err(TeeError::RoomState(
                "the room already ran: fetch the output".into(),
            ));
        }
        let missing: Vec<&str> = self
            .manifest
            .parties
            .iter()
            .filter(|p| !state.uploads.contains_key(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(TeeError::RoomState(format!(
                "waiting for uploads from {}",
                missing.join(", ")
            )));
        }
        let mut inputs = Vec::with_capacity(self.manifest.parties.len());
        let mut described = Vec::new();
        for p in &self.manifest.parties {
            let u = &state.uploads[&p.name];
            let record = self.launched.unseal(&u.sealed)?;
            let data = store::parse_upload_record(&record)
                .and_then(|(_, salted)| salted.get(SALT_LEN..))
                .ok_or(TeeError::Internal(
                    "a stored upload is not an upload record",
                ))?;
            inputs.push(Zeroizing::new(data.to_vec()));
            described
                .push(json!({"party": p.name, "label": u.label, "data_sha256": u.data_sha256}));
        }
        let out = match self.launched.workload().run(inputs) {
            Ok(out) => out,
            Err(e) => {
                self.log(
                    "run_failed",
                    json!({ "requested_by": req.party, "reason": e.to_string() }),
                )?;
                return Err(e);
            }
        };
        let output_sha256 = hex::encode(Sha256::digest(out.output.as_slice()));
        let mut sealed = BTreeMap::new();
        for r in &self.manifest.room.output_to {
            let party = self.manifest.party(r)?;
            let key = hex_key::<32>("encryption_key", &party.encryption_key)?;
            sealed.insert(
                r.clone(),
                seal_to(&key, &output_label(&self.room_id, r), &out.output)?,
            );
        }
        let details = json!({
            "requested_by": req.party,
            "inputs": described,
            "output_sha256": output_sha256,
            "fuel_used": out.fuel_used,
        });
        // On disk before the log entry and the answer: outputs computed before a crash are
        // served after it, unchanged, and the run is not redone.
        if let Some(store) = &self.store {
            let record = store::OutputRecord {
                room_id: hex::encode(self.room_id),
                output_sha256: output_sha256.clone(),
                outputs: sealed.clone(),
                run: details.clone(),
            };
            store.write(store::OUTPUTS, &self.launched.seal(&to_json(&record)?)?)?;
        }
        self.log("run", details)?;
        state.outputs = Some((sealed, output_sha256.clone()));
        Ok(RunSummary {
            output_sha256,
            output_bytes: out.output.len(),
            fuel_used: out.fuel_used,
            output_to: self.manifest.room.output_to.clone(),
        })
    }

    /// The output sealed to the requesting party, if it is a recipient.
    pub fn output(&self, req: &SignedRequest) -> Result<OutputResponse> {
        self.check_request(req, "fetch-output")?;
        let state = self.lock()?;
        let Some((outputs, digest)) = &state.outputs else {
            return Err(TeeError::RoomState("the room has not run yet".into()));
        };
        let Some(sealed) = outputs.get(&req.party) else {
            self.log(
                "output_refused",
                json!({ "party": req.party, "reason": "not a recipient" }),
            )?;
            return Err(refused(format!(
                "{} is not a recipient of this room's output (output_to: {})",
                req.party,
                self.manifest.room.output_to.join(", ")
            )));
        };
        self.log(
            "output_released",
            json!({ "party": req.party, "output_sha256": digest }),
        )?;
        let message = output_message(&req.room_id, &req.party, sealed);
        Ok(OutputResponse {
            sealed: sealed.clone(),
            signature: hex::encode(self.audit_signer.sign(&message).to_bytes()),
        })
    }

    /// The log's text and the signed head for a reader's nonce.
    pub fn audit_report(&self, req: &NonceRequest) -> Result<AuditReport> {
        let nonce = decode_nonce(&req.nonce)?;
        let _guard = self.lock()?;
        let (entries, last_hash) = self.audit.head();
        let log = self.audit.text()?;
        let signature = hex::encode(
            self.audit_signer
                .sign(&audit_head_message(&nonce, entries, &last_hash))
                .to_bytes(),
        );
        Ok(AuditReport {
            log,
            entries,
            last_hash,
            signature,
        })
    }
}

pub(crate) fn decode_nonce(text: &str) -> Result<Vec<u8>> {
    let nonce = decode_b64("nonce", text)?;
    if !(16..=64).contains(&nonce.len()) {
        return Err(bad("the nonce must be 16 to 64 bytes"));
    }
    Ok(nonce)
}

pub(crate) fn split_upload(body: &[u8]) -> Result<(UploadHeader, &[u8])> {
    let (len, rest) = body
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("upload shorter than its header length"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > MAX_HEADER || len > rest.len() {
        return Err(bad("upload header length out of range"));
    }
    let (header, ciphertext) = rest.split_at(len);
    let header: UploadHeader =
        serde_json::from_slice(header).map_err(|e| bad(format!("upload header: {e}")))?;
    Ok((header, ciphertext))
}
