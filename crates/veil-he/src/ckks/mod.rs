//! CKKS: approximate homomorphic arithmetic on vectors of real or complex numbers.
//!
//! The usual flow: build [`CkksParameters`], a [`CkksContext`], generate keys with a
//! [`KeyGenerator`], encode with [`CkksEncoder`], encrypt with [`Encryptor`] (public key) or
//! [`SymmetricEncryptor`] (secret key, seeded), compute with [`Evaluator`], decrypt with
//! [`Decryptor`]. Most users want the higher-level [`CkksVector`].
//!
//! Decrypted values that leave the key holder are flooded with noise first
//! ([`flooding`]: [`CkksVector::decrypt`], [`CkksEncoder::decode_flooded`]); the exact paths
//! ([`Decryptor::decrypt`] with [`CkksEncoder::decode`],
//! [`CkksVector::decrypt_unflooded_for_key_holder_only`]) are for results the key holder keeps.

pub mod bootstrap;
pub mod ciphertext;
pub mod context;
pub mod encoder;
pub mod encryptor;
pub mod evaluator;
pub mod flooding;
pub mod keys;
pub(crate) mod keyswitch;
pub mod params;
pub mod serialize;
pub mod vector;

pub use bootstrap::{BootstrapConfig, BootstrapReport, Bootstrapper};
pub use ciphertext::{Ciphertext, Plaintext};
pub use context::CkksContext;
pub use encoder::CkksEncoder;
pub use encryptor::{Decryptor, Encryptor, SymmetricEncryptor};
pub use evaluator::Evaluator;
pub use flooding::{FloodedValues, NoiseFlooding};
pub use keys::{
    EncapsulationKeys, GaloisKeys, KeyGenerator, PublicKey, RelinearizationKey, SecretKey,
    SwitchingKey,
};
pub use params::{CkksParameters, CkksParametersBuilder, Preset, SecurityLevel};
pub use vector::{CkksVector, EncodedMatrix, Layout, RotationKeys, VectorContext};

pub(crate) use encoder::reduce_f64 as encoder_reduce_f64;
