//! Resuming a room from its state directory after a restart.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ed25519_dalek::SigningKey;
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use veil_attest::audit::{verify_against_head, verify_entries, AuditLog, SignedHead};
use veil_attest::error::Result;
use veil_attest::evidence::sim::SimulatedPlatform;
use veil_attest::util::system_clock;
use veil_kbs::WorkloadKeyPair;

use crate::manifest::*;
use crate::protocol::*;
use crate::server::*;
use crate::store;
use crate::workload::{LaunchedWorkload, Workload};

impl RoomServer {
    pub(crate) fn resume(
        manifest: Manifest,
        manifest_text: &str,
        workload: Workload,
        platform: SimulatedPlatform,
        security_version: u16,
        store: store::Store,
    ) -> Result<Self> {
        let room_id = room_id(manifest_text);
        let ours = hex::encode(room_id);
        let meta_path = store.path(store::META);
        let meta: store::RoomMeta = serde_json::from_slice(&store::Store::read(&meta_path)?)
            .map_err(|e| named(&meta_path, format!("not a room's state file ({e})")))?;
        if meta.version != store::STATE_VERSION {
            return Err(named(
                &meta_path,
                format!(
                    "state format {} (this build reads {})",
                    meta.version,
                    store::STATE_VERSION
                ),
            ));
        }
        if meta.room_id != ours {
            return Err(named(
                &meta_path,
                format!(
                    "this is the state of room {}, not of this manifest's room {}: give the \
                     manifest the room was launched with, or another state directory",
                    short(&meta.room_id),
                    short(&ours)
                ),
            ));
        }
        let measurement = hex::encode(workload.measurement());
        if meta.measurement != measurement {
            return Err(named(
                &meta_path,
                format!(
                    "written by code measured {}, not {measurement}: sealed state opens only \
                     for the code that sealed it",
                    meta.measurement
                ),
            ));
        }
        let platform_key = hex::encode(platform.public_key());
        if meta.platform_key != platform_key {
            return Err(named(
                &meta_path,
                format!(
                    "sealed on platform {}, not on this platform {platform_key}: sealed state \
                     opens only on the platform that sealed it",
                    meta.platform_key
                ),
            ));
        }
        let sealed_keys = hex::decode(&meta.sealed_keys)
            .map_err(|_| named(&meta_path, "sealed_keys is not hex"))?;
        let keys_json = workload.unseal_on(&platform, &sealed_keys).map_err(|_| {
            named(
                &meta_path,
                "the room's keys do not unseal: sealed by another measurement or platform, or \
                 tampered with",
            )
        })?;
        let keys: store::SealedKeys = serde_json::from_slice(&keys_json)
            .map_err(|_| named(&meta_path, "the sealed keys are malformed"))?;
        drop(keys_json);
        if keys.room_id != ours {
            return Err(named(&meta_path, "the sealed keys belong to another room"));
        }
        let audit_seed = Zeroizing::new(
            hex_key::<32>("audit_secret", &keys.audit_secret)
                .map_err(|_| named(&meta_path, "the sealed audit key is malformed"))?,
        );
        let audit_signer = SigningKey::from_bytes(&audit_seed);
        let workload_secret = Zeroizing::new(
            hex::decode(&keys.workload_secret)
                .map_err(|_| named(&meta_path, "the sealed workload key is malformed"))?,
        );
        let key = WorkloadKeyPair::from_private_bytes(&workload_secret)
            .map_err(|_| named(&meta_path, "the sealed workload key is malformed"))?;
        drop(keys);
        let audit_public = audit_signer.verifying_key();
        if hex::encode(audit_public.to_bytes()) != meta.audit_key
            || hex::encode(key.public_bytes()) != meta.workload_key
        {
            return Err(named(
                &meta_path,
                "the sealed keys are not the room's public keys it names",
            ));
        }

        // The log: complete lines, one chain, every entry signed by this room's key, this
        // room's creation first, and nothing the room's last signed head vouches for missing.
        let log_path = store.path(store::AUDIT);
        if !log_path.exists() {
            return Err(named(
                &log_path,
                "missing: a room does not resume without its audit log",
            ));
        }
        let cut_partial = store::cut_partial_line(&log_path)?;
        let text = String::from_utf8(store::Store::read(&log_path)?)
            .map_err(|_| named(&log_path, "not text"))?;
        let entries =
            verify_entries(&text, Some(&audit_public)).map_err(|e| named(&log_path, e))?;
        let created = entries.first().is_some_and(|e| {
            e.event == "room_created"
                && e.details["room_id"] == ours.as_str()
                && e.details["audit_key"] == meta.audit_key.as_str()
        });
        if !created {
            return Err(named(
                &log_path,
                "does not begin with this room's creation by its audit key",
            ));
        }
        let head_path = store.path(store::HEAD);
        let head: SignedHead = serde_json::from_slice(&store::Store::read(&head_path)?)
            .map_err(|e| named(&head_path, format!("not a signed head ({e})")))?;
        head.verify(Some(&audit_public))
            .map_err(|e| named(&head_path, e))?;
        verify_against_head(&text, &head, Some(&audit_public)).map_err(|e| {
            named(
                &log_path,
                format!(
                    "{e} (the room's last signed head is {})",
                    head_path.display()
                ),
            )
        })?;
        let audit = AuditLog::open(&log_path)?
            .durable()
            .with_signer(audit_signer.clone());
        let launched = LaunchedWorkload::launch_with_key(
            workload,
            key,
            &platform,
            security_version,
            b"launch",
            &runtime_data(&room_id, &audit_public.to_bytes()),
        );

        // The uploads and the run the log records.
        let mut logged: BTreeMap<String, (String, u64)> = BTreeMap::new();
        let mut run_entry = None;
        for e in &entries {
            match e.event.as_str() {
                "upload" => {
                    let party = e.details["party"].as_str().unwrap_or_default();
                    let sha = e.details["data_sha256"].as_str().unwrap_or_default();
                    logged.insert(party.to_string(), (sha.to_string(), e.seq));
                }
                "run" => run_entry = Some(e),
                _ => {}
            }
        }
        let mut uploads = BTreeMap::new();
        let mut unlogged = Vec::new();
        for name in store.upload_files()? {
            let path = store.dir().join(store::UPLOADS).join(&name);
            let party = name
                .strip_suffix(".sealed")
                .filter(|p| manifest.party(p).is_ok())
                .ok_or_else(|| {
                    named(
                        &path,
                        "not a file this room writes (uploads are PARTY.sealed, for the \
                         manifest's parties)",
                    )
                })?;
            let sealed = store::Store::read(&path)?;
            let record = launched.unseal(&sealed).map_err(|_| {
                named(
                    &path,
                    "does not unseal: tampered with, or sealed by another measurement or \
                     platform",
                )
            })?;
            let (meta_u, salted) = store::parse_upload_record(&record)
                .ok_or_else(|| named(&path, "not an upload record"))?;
            if meta_u.room_id != ours || meta_u.party != party {
                return Err(named(
                    &path,
                    format!(
                        "holds {}'s upload to room {}, not {party}'s to this room: files were \
                         swapped",
                        meta_u.party,
                        short(&meta_u.room_id)
                    ),
                ));
            }
            if hex::encode(Sha256::digest(salted)) != meta_u.data_sha256 {
                return Err(named(&path, "the data does not match its recorded hash"));
            }
            match logged.get(party) {
                Some((sha, _)) if *sha == meta_u.data_sha256 => {
                    uploads.insert(
                        party.to_string(),
                        StoredUpload {
                            label: meta_u.label,
                            data_sha256: meta_u.data_sha256,
                            sealed,
                        },
                    );
                }
                Some((_, seq)) => {
                    return Err(named(
                        &path,
                        format!(
                            "does not match {party}'s upload that the audit log records \
                             (entry {seq})"
                        ),
                    ))
                }
                // Written, then a crash before its log entry: never acknowledged.
                None => unlogged.push((party.to_string(), meta_u.data_sha256, path)),
            }
        }
        for (party, (_, seq)) in &logged {
            if !uploads.contains_key(party) {
                return Err(named(
                    &store.upload_path(party),
                    format!(
                        "missing, but the audit log records {party}'s upload (entry {seq}): \
                         refusing to start without a party's data"
                    ),
                ));
            }
        }
        let out_path = store.path(store::OUTPUTS);
        let mut outputs = None;
        let mut recovered_run = None;
        if out_path.exists() {
            let record = launched
                .unseal(&store::Store::read(&out_path)?)
                .map_err(|_| {
                    named(
                        &out_path,
                        "does not unseal: tampered with, or sealed by another measurement or \
                         platform",
                    )
                })?;
            let record: store::OutputRecord = serde_json::from_slice(&record)
                .map_err(|_| named(&out_path, "not an output record"))?;
            if record.room_id != ours {
                return Err(named(&out_path, "holds another room's outputs"));
            }
            match run_entry {
                Some(e) if e.details["output_sha256"] == record.output_sha256.as_str() => {}
                Some(e) => {
                    return Err(named(
                        &out_path,
                        format!(
                            "does not match the run the audit log records (entry {})",
                            e.seq
                        ),
                    ))
                }
                None => recovered_run = Some(record.run.clone()),
            }
            outputs = Some((record.outputs, record.output_sha256));
        } else if let Some(e) = run_entry {
            return Err(named(
                &out_path,
                format!(
                    "missing, but the audit log records a run (entry {}): refusing to start \
                     without the outputs the parties were told about",
                    e.seq
                ),
            ));
        }
        let ran = outputs.is_some();
        let resumed_uploads: Vec<String> = uploads.keys().cloned().collect();
        let room = Self {
            manifest,
            manifest_text: manifest_text.to_string(),
            room_id,
            platform,
            launched,
            audit_signer,
            audit,
            state: Mutex::new(RoomState { uploads, outputs }),
            clock: system_clock(),
            store: Some(store),
            resumed: true,
        };
        for (party, data_sha256, path) in unlogged {
            room.log(
                "upload_discarded",
                json!({
                    "party": party,
                    "data_sha256": data_sha256,
                    "reason": "written before a crash but never logged, so never acknowledged: \
                               the party got no receipt and uploads again",
                }),
            )?;
            std::fs::remove_file(&path).map_err(|e| named(&path, e))?;
        }
        if let Some(store) = &room.store {
            store.sync()?;
        }
        if let Some(mut run) = recovered_run {
            if let Some(details) = run.as_object_mut() {
                details.insert("recovered_at_resume".into(), json!(true));
            }
            room.log("run", run)?;
        }
        room.log(
            "resumed",
            json!({
                "room_id": ours,
                "uploads": resumed_uploads,
                "ran": ran,
                "entries_before": entries.len(),
                "cut_partial_entry": cut_partial,
                "platform_key": platform_key,
                "audit_key": meta.audit_key,
                "workload_key": meta.workload_key,
            }),
        )?;
        Ok(room)
    }
}
