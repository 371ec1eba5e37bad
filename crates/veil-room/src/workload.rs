//! Measured WebAssembly workloads: the portable unit of confidential code.
//!
//! A workload is a WebAssembly module run by `wasmtime` with a fuel budget and a memory limit
//! and **no ambient authority**: no WASI, so no file system, no network, no environment; a
//! clock only if the launch configuration grants it. Inputs and outputs pass through this
//! host interface (module `veil`):
//!
//! | import | signature | what |
//! |---|---|---|
//! | `input_count` | `() -> i32` | number of inputs |
//! | `input_len` | `(i: i32) -> i32` | byte length of input `i` (-1 if there is none) |
//! | `input_read` | `(i: i32, ptr: i32, len: i32) -> i32` | copies up to `len` bytes of input `i` to `memory[ptr..]`, returns the count |
//! | `output_write` | `(ptr: i32, len: i32) -> i32` | appends `memory[ptr..ptr+len]` to the output (capped at [`MAX_OUTPUT`]) |
//! | `log` | `(ptr: i32, len: i32)` | a UTF-8 diagnostic line (kept, at most 64 lines) |
//! | `clock_ms` | `() -> i64` | Unix time in milliseconds — **only when granted** |
//!
//! The module exports its `memory` and `run: () -> i32` (0 = success; anything else is the
//! workload's own error code).
//!
//! Its **measurement** is SHA-384 over the module's binary and its launch configuration (fuel,
//! memory limit, grants), so a policy pins both the code and the limits it runs under. At
//! launch the runtime generates an ephemeral HPKE key pair and asks the TEE for evidence whose
//! report data binds nonce ‖ public key ‖ measurement; inputs arrive sealed to that key and
//! exist in the clear only inside the runtime. Data a workload seals can be unsealed only by
//! the same measurement on the same platform.
//!
//! Here the TEE is simulated. On real hardware the same runtime runs inside an SGX enclave
//! (Gramine), or in an SEV-SNP / TDX confidential VM, and the evidence comes from the
//! hardware (`/dev/attestation/quote`, `/dev/sev-guest`, `/dev/tdx_guest`) instead of
//! [`SimulatedPlatform`]; the sealing secret from the hardware's key derivation (EGETKEY,
//! `MSG_KEY_REQ`), not from the simulated platform's seed.

use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha384};
use wasmtime::{Caller, Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder};
use zeroize::Zeroizing;

use veil_attest::binding::expected_report_data;
use veil_attest::error::{Result, TeeError};
use veil_attest::evidence::sim::SimulatedPlatform;
use veil_kbs::{ReleasedSecret, WorkloadKeyPair};

/// Largest output a workload may write.
pub const MAX_OUTPUT: usize = 16 << 20;
/// Largest module accepted.
pub const MAX_MODULE: usize = 64 << 20;
/// How many runs of one [`Workload`] may be in progress at once (memory slots in its pool).
pub const CONCURRENT_RUNS: u32 = 8;
/// Bytes of each memory slot kept mapped between runs (zeroed with memset, not madvise).
const KEEP_RESIDENT: usize = 64 << 20;

/// How a workload is launched; part of its measurement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// Fuel (roughly, WebAssembly instructions) the run may consume.
    pub fuel: u64,
    /// Largest linear memory, in bytes.
    pub max_memory_bytes: u64,
    /// Whether `veil.clock_ms` is available.
    #[serde(default)]
    pub grant_clock: bool,
}

impl Default for LaunchConfig {
    fn default() -> Self {
        Self {
            fuel: 10_000_000_000,
            max_memory_bytes: 256 << 20,
            grant_clock: false,
        }
    }
}

/// A compiled workload and its measurement.
#[derive(Clone)]
pub struct Workload {
    engine: Engine,
    module: Module,
    config: LaunchConfig,
    measurement: [u8; 48],
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("measurement", &hex::encode(self.measurement))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The measurement of a module binary under a launch configuration.
pub fn measure(wasm: &[u8], config: &LaunchConfig) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(b"veil-workload-v1");
    h.update((wasm.len() as u64).to_le_bytes());
    h.update(wasm);
    for v in [
        config.fuel,
        config.max_memory_bytes,
        u64::from(config.grant_clock),
    ] {
        h.update(v.to_le_bytes());
    }
    h.finalize().into()
}

/// The measurement of a module given as WebAssembly binary or text (assembled as
/// [`Workload::new`] does) under a launch configuration, without compiling it. It differs from
/// the SHA-384 of the file alone (what `veil attest simulate` reports for a file): it covers
/// the launch limits too.
pub fn measure_module(module: &[u8], config: &LaunchConfig) -> Result<[u8; 48]> {
    if module.len() > MAX_MODULE {
        return Err(TeeError::Workload(format!(
            "module of {} bytes exceeds {MAX_MODULE}",
            module.len()
        )));
    }
    let wasm = wat::parse_bytes(module).map_err(|e| workload_err("assembling the module", e))?;
    Ok(measure(&wasm, config))
}

fn workload_err(what: &str, e: impl std::fmt::Display) -> TeeError {
    TeeError::Workload(format!("{what}: {e}"))
}

impl Workload {
    /// Compiles a module given as WebAssembly binary or text (`.wat`, assembled with `wat`).
    pub fn new(module: &[u8], config: LaunchConfig) -> Result<Self> {
        if module.len() > MAX_MODULE {
            return Err(TeeError::Workload(format!(
                "module of {} bytes exceeds {MAX_MODULE}",
                module.len()
            )));
        }
        let wasm =
            wat::parse_bytes(module).map_err(|e| workload_err("assembling the module", e))?;
        let mut engine_config = Config::new();
        engine_config.consume_fuel(true);
        // Linear memories come from a pool of slots that stay mapped: a run does not pay page
        // faults to grow its memory, and a slot is reset to zero (memset up to
        // KEEP_RESIDENT, madvise beyond) when the run ends, so no plaintext outlives it.
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_core_instances(CONCURRENT_RUNS)
            .total_memories(CONCURRENT_RUNS)
            .total_tables(CONCURRENT_RUNS)
            .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX))
            .linear_memory_keep_resident(KEEP_RESIDENT);
        engine_config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&engine_config).map_err(|e| workload_err("engine", e))?;
        let module =
            Module::new(&engine, &wasm).map_err(|e| workload_err("compiling the module", e))?;
        let measurement = measure(&wasm, &config);
        Ok(Self {
            engine,
            module,
            config,
            measurement,
        })
    }

    /// Reads and compiles a module file.
    pub fn from_file(path: &Path, config: LaunchConfig) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| TeeError::Workload(format!("{}: {e}", path.display())))?;
        Self::new(&bytes, config)
    }

    /// The measurement (SHA-384 of module and launch configuration).
    pub fn measurement(&self) -> [u8; 48] {
        self.measurement
    }

    /// The launch configuration.
    pub fn config(&self) -> &LaunchConfig {
        &self.config
    }

    /// Unseals data that a launch of this workload (the same measurement) sealed on
    /// `platform` ([`LaunchedWorkload::seal`]), before it is launched: how a relaunch gets
    /// back the keys it sealed. Data sealed by another measurement or on another platform,
    /// or tampered with, does not unseal.
    pub fn unseal_on(
        &self,
        platform: &SimulatedPlatform,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        unseal_with(
            &sealing_key(&platform.sealing_secret(), &self.measurement),
            sealed,
        )
    }

    /// Runs the workload once on plaintext inputs (inside the runtime) and returns its output.
    pub fn run(&self, inputs: Vec<Zeroizing<Vec<u8>>>) -> Result<RunOutput> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(self.config.max_memory_bytes).unwrap_or(usize::MAX))
            .instances(1)
            .tables(4)
            .memories(1)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState {
            inputs,
            output: Zeroizing::new(Vec::new()),
            logs: Vec::new(),
            limits,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store
            .set_fuel(self.config.fuel)
            .map_err(|e| workload_err("fuel", e))?;
        let mut linker: Linker<HostState> = Linker::new(&self.engine);
        link_host(&mut linker, self.config.grant_clock)?;
        let instance = linker
            .instantiate(&mut store, &self.module)
            .map_err(|e| explain(&e, &self.config, "instantiating the workload"))?;
        let run = instance
            .get_typed_func::<(), i32>(&mut store, "run")
            .map_err(|e| workload_err("the module must export `run: () -> i32`", e))?;
        let code = run
            .call(&mut store, ())
            .map_err(|e| explain(&e, &self.config, "running the workload"))?;
        let fuel_left = store.get_fuel().unwrap_or(0);
        let mut state = store.into_data();
        for input in std::mem::take(&mut state.inputs) {
            wipe(input);
        }
        if code != 0 {
            return Err(TeeError::Workload(format!(
                "the workload returned error code {code}{}",
                if state.logs.is_empty() {
                    String::new()
                } else {
                    format!(" (log: {})", state.logs.join(" | "))
                }
            )));
        }
        Ok(RunOutput {
            output: std::mem::take(&mut state.output),
            logs: state.logs,
            fuel_used: self.config.fuel.saturating_sub(fuel_left),
        })
    }
}

/// Drops plaintext, zeroizing its whole allocation in one bulk pass: `Zeroizing<Vec<u8>>`
/// zeroizes the elements one volatile write at a time (about 5× slower on inputs of
/// megabytes), then the spare capacity in bulk; clearing first makes the whole buffer spare
/// capacity.
pub(crate) fn wipe(mut data: Zeroizing<Vec<u8>>) {
    data.clear();
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// The bytes the workload wrote with `output_write`.
    pub output: Zeroizing<Vec<u8>>,
    /// Its log lines.
    pub logs: Vec<String>,
    /// Fuel consumed.
    pub fuel_used: u64,
}

struct HostState {
    inputs: Vec<Zeroizing<Vec<u8>>>,
    output: Zeroizing<Vec<u8>>,
    logs: Vec<String>,
    limits: StoreLimits,
}

fn explain(e: &wasmtime::Error, config: &LaunchConfig, what: &str) -> TeeError {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        if *trap == wasmtime::Trap::OutOfFuel {
            return TeeError::Workload(format!(
                "{what}: the workload ran out of fuel (limit {}) and was stopped",
                config.fuel
            ));
        }
    }
    let text = format!("{e:#}");
    if text.contains("concurrent") && text.contains("limit") {
        return TeeError::Workload(format!(
            "{what}: more than {CONCURRENT_RUNS} runs of this workload at once"
        ));
    }
    if text.contains("forcing trap when growing memory") || text.contains("memory minimum size") {
        return TeeError::Workload(format!(
            "{what}: the workload exceeded its memory limit of {} bytes and was stopped",
            config.max_memory_bytes
        ));
    }
    if text.contains("clock_ms") && !config.grant_clock {
        return TeeError::Workload(format!(
            "{what}: the workload imports veil.clock_ms, which its launch configuration does not grant"
        ));
    }
    if text.contains("unknown import") {
        return TeeError::Workload(format!(
            "{what}: {text} (the runtime offers only the `veil` host interface: no WASI, no file system, no network)"
        ));
    }
    TeeError::Workload(format!("{what}: {text}"))
}

fn memory(caller: &mut Caller<'_, HostState>) -> wasmtime::Result<wasmtime::Memory> {
    caller
        .get_export("memory")
        .and_then(wasmtime::Extern::into_memory)
        .ok_or_else(|| wasmtime::Error::msg("the workload exports no `memory`"))
}

fn link_host(linker: &mut Linker<HostState>, grant_clock: bool) -> Result<()> {
    let err = |e| workload_err("linking the host interface", e);
    linker
        .func_wrap("veil", "input_count", |caller: Caller<'_, HostState>| {
            i32::try_from(caller.data().inputs.len()).unwrap_or(i32::MAX)
        })
        .map_err(err)?;
    linker
        .func_wrap(
            "veil",
            "input_len",
            |caller: Caller<'_, HostState>, i: i32| -> i32 {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| caller.data().inputs.get(i))
                    .map_or(-1, |v| i32::try_from(v.len()).unwrap_or(-1))
            },
        )
        .map_err(err)?;
    linker
        .func_wrap(
            "veil",
            "input_read",
            |mut caller: Caller<'_, HostState>,
             i: i32,
             ptr: i32,
             len: i32|
             -> wasmtime::Result<i32> {
                let mem = memory(&mut caller)?;
                let start = usize::try_from(ptr)
                    .map_err(|_| wasmtime::Error::msg("input_read: negative pointer"))?;
                let (memory_bytes, state) = mem.data_and_store_mut(&mut caller);
                let Some(input) = usize::try_from(i).ok().and_then(|i| state.inputs.get(i)) else {
                    return Ok(-1);
                };
                let n = usize::try_from(len).unwrap_or(0).min(input.len());
                let dest = memory_bytes
                    .get_mut(start..start.saturating_add(n))
                    .ok_or_else(|| wasmtime::Error::msg("input_read: out of bounds"))?;
                dest.copy_from_slice(&input[..n]);
                Ok(i32::try_from(n).unwrap_or(i32::MAX))
            },
        )
        .map_err(err)?;
    linker
        .func_wrap(
            "veil",
            "output_write",
            |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
                let mem = memory(&mut caller)?;
                let (start, n) = (
                    usize::try_from(ptr).map_err(|_| wasmtime::Error::msg("negative pointer"))?,
                    usize::try_from(len).map_err(|_| wasmtime::Error::msg("negative length"))?,
                );
                let data = mem
                    .data(&caller)
                    .get(start..start.saturating_add(n))
                    .ok_or_else(|| wasmtime::Error::msg("output_write: out of bounds"))?
                    .to_vec();
                // The output is plaintext: no copy of it outlives the run unwiped.
                let data = Zeroizing::new(data);
                let out = &mut caller.data_mut().output;
                if out.len() + data.len() > MAX_OUTPUT {
                    return Err(wasmtime::Error::msg(format!(
                        "output larger than {MAX_OUTPUT} bytes"
                    )));
                }
                if out.len() + data.len() > out.capacity() {
                    // Grow into a new buffer so the old one is zeroized, not left behind by a
                    // reallocation.
                    let mut grown = Zeroizing::new(Vec::with_capacity(
                        (out.len() + data.len())
                            .max(2 * out.capacity())
                            .min(MAX_OUTPUT),
                    ));
                    grown.extend_from_slice(out);
                    *out = grown;
                }
                out.extend_from_slice(&data);
                Ok(len)
            },
        )
        .map_err(err)?;
    linker
        .func_wrap(
            "veil",
            "log",
            |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
                let mem = memory(&mut caller)?;
                let start = usize::try_from(ptr).unwrap_or(usize::MAX);
                let n = usize::try_from(len).unwrap_or(0).min(1024);
                let line = mem
                    .data(&caller)
                    .get(start..start.saturating_add(n))
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let logs = &mut caller.data_mut().logs;
                if logs.len() < 64 {
                    logs.push(line);
                }
                Ok(())
            },
        )
        .map_err(err)?;
    if grant_clock {
        linker
            .func_wrap("veil", "clock_ms", || -> i64 {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            })
            .map_err(err)?;
    }
    Ok(())
}

/// A workload launched in the (simulated) TEE: its ephemeral key pair and the evidence binding
/// its measurement and public key.
pub struct LaunchedWorkload {
    workload: Workload,
    key: WorkloadKeyPair,
    sealing_key: Zeroizing<[u8; 32]>,
    evidence: Vec<u8>,
    security_version: u16,
}

impl std::fmt::Debug for LaunchedWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchedWorkload")
            .field("workload", &self.workload)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl LaunchedWorkload {
    /// Launches `workload` on `platform`: a fresh key pair, and evidence whose report data binds
    /// `nonce`, the public key and `runtime_data`.
    pub fn launch(
        workload: Workload,
        platform: &SimulatedPlatform,
        security_version: u16,
        nonce: &[u8],
        runtime_data: &[u8],
    ) -> Self {
        Self::launch_with_key(
            workload,
            WorkloadKeyPair::generate(),
            platform,
            security_version,
            nonce,
            runtime_data,
        )
    }

    /// Relaunches `workload` on `platform` with the key pair an earlier launch of the same
    /// measurement used (kept sealed to that measurement, see [`Workload::unseal_on`]):
    /// evidence binding `nonce`, that public key and `runtime_data`. A room resuming from
    /// its state directory keeps the key its parties attested.
    pub fn launch_with_key(
        workload: Workload,
        key: WorkloadKeyPair,
        platform: &SimulatedPlatform,
        security_version: u16,
        nonce: &[u8],
        runtime_data: &[u8],
    ) -> Self {
        let report_data = expected_report_data(nonce, &key.public_bytes(), runtime_data);
        let evidence = platform.issue(&workload.measurement, &report_data, false, security_version);
        let sealing_key = sealing_key(&platform.sealing_secret(), &workload.measurement);
        Self {
            workload,
            key,
            sealing_key,
            evidence,
            security_version,
        }
    }

    /// Fresh evidence from `platform` (the one it was launched on) for the same key: report
    /// data binding a verifier's `nonce`, the public key and `runtime_data`.
    pub fn attest(
        &self,
        platform: &SimulatedPlatform,
        nonce: &[u8],
        runtime_data: &[u8],
    ) -> Vec<u8> {
        let report_data = expected_report_data(nonce, &self.key.public_bytes(), runtime_data);
        platform.issue(
            &self.workload.measurement,
            &report_data,
            false,
            self.security_version,
        )
    }

    /// Opens data HPKE-sealed to this workload's key (inside the TEE).
    pub fn open(&self, sealed: &ReleasedSecret) -> Result<Zeroizing<Vec<u8>>> {
        self.key.open(sealed)
    }

    /// Opens an upload sealed to this workload's key ([`seal_upload`]) inside the TEE.
    pub fn open_upload(&self, upload: &SealedUpload) -> Result<Zeroizing<Vec<u8>>> {
        open_upload(&self.key, upload)
    }

    /// The evidence to present to the attestation service.
    pub fn evidence(&self) -> &[u8] {
        &self.evidence
    }

    /// The workload's public key (HPKE X25519), bound in the evidence.
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_bytes()
    }

    /// The workload.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// Opens inputs sealed to this workload's key and runs it.
    pub fn run_sealed(&self, inputs: &[ReleasedSecret]) -> Result<RunOutput> {
        let plain = inputs
            .iter()
            .map(|i| self.key.open(i))
            .collect::<Result<Vec<_>>>()?;
        self.workload.run(plain)
    }

    /// Opens uploads sealed to this workload's key ([`seal_upload`]) and runs it.
    pub fn run_uploads(&self, uploads: &[SealedUpload]) -> Result<RunOutput> {
        let plain = uploads
            .iter()
            .map(|u| open_upload(&self.key, u))
            .collect::<Result<Vec<_>>>()?;
        self.workload.run(plain)
    }

    /// Seals `data` so that only this measurement on this platform can unseal it.
    pub fn seal(&self, data: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.sealing_key, data)
    }

    /// Unseals data sealed by the same measurement on the same platform.
    pub fn unseal(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        unseal_with(&self.sealing_key, sealed)
    }
}

/// A large input sealed to a workload: HPKE wraps a fresh AES-256-GCM key to the workload's
/// attested key, and AES-256-GCM (ring, hardware-accelerated) encrypts the data — the envelope
/// that keeps uploads near raw AES-GCM speed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedUpload {
    /// The data key, HPKE-sealed to the workload key (its `name` is the upload's label).
    pub wrapped_key: ReleasedSecret,
    /// AES-256-GCM nonce.
    pub nonce: [u8; 12],
    /// Ciphertext and tag (sent as a binary body, not JSON).
    pub ciphertext: Vec<u8>,
}

fn upload_aad(label: &str) -> Vec<u8> {
    let mut aad = b"veil-upload-v1\0".to_vec();
    aad.extend_from_slice(label.as_bytes());
    aad
}

/// Seals `data` labelled `label` to a workload's public key (X25519).
pub fn seal_upload(workload_public_key: &[u8], label: &str, data: &[u8]) -> Result<SealedUpload> {
    use ring::aead::{Aad, LessSafeKey, Nonce as AeadNonce, UnboundKey, AES_256_GCM};
    let rng = ring::rand::SystemRandom::new();
    let mut key = Zeroizing::new([0u8; 32]);
    let mut nonce = [0u8; 12];
    ring::rand::SecureRandom::fill(&rng, key.as_mut())
        .and_then(|()| ring::rand::SecureRandom::fill(&rng, &mut nonce))
        .map_err(|_| TeeError::Crypto("no system randomness"))?;
    let wrapped_key = veil_kbs::seal_to(workload_public_key, label, key.as_ref())?;
    let aead = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key.as_ref()).map_err(|_| TeeError::Crypto("AES key"))?,
    );
    let mut buf = data.to_vec();
    aead.seal_in_place_append_tag(
        AeadNonce::assume_unique_for_key(nonce),
        Aad::from(upload_aad(label)),
        &mut buf,
    )
    .map_err(|_| TeeError::Crypto("AES-GCM seal failed"))?;
    Ok(SealedUpload {
        wrapped_key,
        nonce,
        ciphertext: buf,
    })
}

fn open_upload(key: &WorkloadKeyPair, upload: &SealedUpload) -> Result<Zeroizing<Vec<u8>>> {
    use ring::aead::{Aad, LessSafeKey, Nonce as AeadNonce, UnboundKey, AES_256_GCM};
    let data_key = key.open(&upload.wrapped_key)?;
    let nonce = upload.nonce;
    let aead = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &data_key)
            .map_err(|_| TeeError::BadRequest("upload data key is not 32 bytes".into()))?,
    );
    let mut buf = Zeroizing::new(upload.ciphertext.clone());
    let n = aead
        .open_in_place(
            AeadNonce::assume_unique_for_key(nonce),
            Aad::from(upload_aad(&upload.wrapped_key.name)),
            buf.as_mut_slice(),
        )
        .map_err(|_| TeeError::Crypto("the upload does not open with this workload's key"))?
        .len();
    buf.truncate(n);
    Ok(buf)
}

const SEAL_MAGIC: &[u8; 6] = b"VSEAL1";

fn sealing_key(platform_secret: &[u8; 32], measurement: &[u8; 48]) -> Zeroizing<[u8; 32]> {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(b"veil-seal-v1"), platform_secret);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    if hk.expand(measurement, key.as_mut()).is_err() {
        key.as_mut().fill(0);
    }
    key
}

fn seal_with(key: &[u8; 32], data: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| TeeError::Crypto("no system randomness"))?;
    let ct = ChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: data,
                aad: SEAL_MAGIC,
            },
        )
        .map_err(|_| TeeError::Crypto("sealing failed"))?;
    let mut out = SEAL_MAGIC.to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn unseal_with(key: &[u8; 32], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < SEAL_MAGIC.len() + 12 + 16 || !sealed.starts_with(SEAL_MAGIC) {
        return Err(TeeError::Workload("not sealed data".into()));
    }
    let (nonce, ct) = sealed[SEAL_MAGIC.len()..].split_at(12);
    ChaCha20Poly1305::new(Key::from_slice(key))
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: SEAL_MAGIC,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| {
            TeeError::Workload(
                "unsealing failed: sealed by another measurement or platform, or tampered".into(),
            )
        })
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod tests;
