//! Multi-party data rooms: several parties agree on the code to run, check the TEE's identity,
//! send their data encrypted to it, and receive the output — nobody else, the operator
//! included, sees any party's data, and every step is in a signed, hash-chained audit log.
//!
//! - A [`Manifest`] (TOML) names the code's measurement and launch configuration, the parties
//!   with their signing (Ed25519) and encryption (X25519) keys, who receives the output, the
//!   attestation policy and the trusted platform keys. The room id is the SHA-256 of the
//!   manifest file: every party holds the same bytes.
//! - [`RoomServer`] is the room's side: it runs in the TEE (simulated here), launches the
//!   workload with a fresh HPKE key and a fresh Ed25519 *audit key*, and gives evidence whose
//!   report data binds a verifier's nonce, the HPKE key, the room id and the audit key.
//! - [`RoomClient`] is a party's side: it verifies that evidence against *its* manifest
//!   (measurement, policy, platform key, binding) before anything leaves the party — a room
//!   running other code gets no data path — then uploads data sealed to the attested key and
//!   signed by the party, asks for the run, fetches the output sealed to itself, and verifies
//!   the audit log.
//!
//! Every event (creation, attestation, upload with the data's SHA-256, run, output release or
//! refusal) is appended to a hash-chained log whose entries are signed by the audit key; a
//! reader asks for the log with a fresh nonce and gets the writer's signed head (entry count
//! and last hash), so an edited, dropped, reordered or truncated copy is detected.
//!
//! A room launched with [`RoomServer::open`] keeps its state in a directory — its keys sealed
//! to the measurement, the audit log, every accepted upload and the outputs, each on disk
//! before the room answers — and resumes from it after a restart, refusing a tampered,
//! swapped, cut or missing file by name (issue 12, item 19; `docs/security/cc.md`).

pub mod manifest;
pub mod party;
pub mod protocol;
mod recovery;
pub mod server;
mod store;
pub mod workload;

pub use manifest::*;
pub use party::*;
pub use protocol::*;
pub use server::{PartyStatus, RoomServer, RoomStatus};
