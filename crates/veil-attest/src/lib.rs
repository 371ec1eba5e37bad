//! # veil-attest: remote attestation
//!
//! Code in a trusted execution environment proves what it is with *evidence*: a report of
//! its measurements and 64 bytes of its own data, signed by the hardware. This crate turns
//! evidence into typed, verified claims — or a precise reason for rejecting it — and decides,
//! without any HTTP, what the attestation service answers. The confidential-computing stack
//! is four crates with no cycle: `veil-attest` ← `veil-kbs` (secure key release) ←
//! `veil-room` (measured workloads, data rooms) ← `veil-server` (every HTTP route and client).
//!
//! - [`evidence::detect`] tells the kind of evidence from its header.
//! - [`evidence::dcap::DcapVerifier`] (feature `dcap`): Intel SGX quotes v3 and TDX quotes
//!   v4/v5 through the pure-Rust `dcap-qvl`, offline against stored collateral at a given time.
//! - [`evidence::snp::SnpVerifier`] (feature `snp`): AMD SEV-SNP reports, signature by the
//!   VCEK and the VCEK's chain to AMD's roots, with the `sev` crate (pure-Rust crypto);
//!   certificate validity at the given time, the report's TCB and chip id against the VCEK,
//!   a TCB status against a minimum TCB.
//! - [`evidence::sim`] (feature `sim`): a clearly labelled simulated TEE for demos and tests;
//!   its claims always say `tee: "sim"`.
//! - [`binding`]: the report data must equal `SHA-512(nonce ‖ public key ‖ runtime data)`.
//!
//! With the `service` feature (default):
//!
//! - [`policy`]: TOML allow-lists and Rego policies (with `regorus`) over claims.
//! - [`token`]: attestation tokens (JWT, ES256/ES384) and their JWKS.
//! - [`service`]: the attestation service's logic — single-use nonces, verification, binding,
//!   policy, tokens, the audit log (its routes are `veil_server::attest`).
//! - [`audit`]: hash-chained, signed audit logs.
//! - [`util`]: the clock, base64 fields, private files.
//! - [`pccs`] (with `dcap`): fetch DCAP collateral for a quote from a PCCS (optional;
//!   verification is offline).

#[cfg(feature = "service")]
pub mod audit;
pub mod binding;
pub mod claims;
pub mod error;
pub mod evidence;
#[cfg(all(feature = "service", feature = "dcap"))]
pub mod pccs;
#[cfg(feature = "service")]
pub mod policy;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod token;
#[cfg(feature = "service")]
pub mod util;

pub use claims::{TeeKind, VerifiedClaims};
pub use error::{Result, TeeError};
