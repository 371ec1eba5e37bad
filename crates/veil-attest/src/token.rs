//! Attestation tokens: JWTs (ES256 or ES384) that the attestation service signs after evidence
//! passed verification and policy, and that relying parties (the key broker) verify against
//! the service's JWKS.
//!
//! Signing keys are ECDSA keys held by `ring` (PKCS#8, zeroized by `ring` on drop); tokens are
//! encoded and checked with `jsonwebtoken`. Verification pins the algorithm to the one named
//! by the key in the JWKS (no `alg` confusion) and checks expiry against an explicit clock.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::claims::VerifiedClaims;
use crate::error::{Result, TeeError};

/// Issuer name written in every token (`iss`).
pub const ISSUER: &str = "veil-attestation";

/// The signature algorithm of attestation tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenAlgorithm {
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
}

impl TokenAlgorithm {
    fn ring(self) -> &'static ring::signature::EcdsaSigningAlgorithm {
        match self {
            TokenAlgorithm::ES256 => &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            TokenAlgorithm::ES384 => &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            TokenAlgorithm::ES256 => Algorithm::ES256,
            TokenAlgorithm::ES384 => Algorithm::ES384,
        }
    }

    fn curve(self) -> &'static str {
        match self {
            TokenAlgorithm::ES256 => "P-256",
            TokenAlgorithm::ES384 => "P-384",
        }
    }

    /// Parses `ES256` or `ES384`.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_uppercase().as_str() {
            "ES256" => Ok(TokenAlgorithm::ES256),
            "ES384" => Ok(TokenAlgorithm::ES384),
            other => Err(TeeError::BadRequest(format!(
                "token algorithm {other} is not supported (use ES256 or ES384)"
            ))),
        }
    }
}

/// Which policy let the evidence through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// The policy's name (its file name).
    pub name: String,
    /// SHA-256 of the policy text (hex).
    pub sha256: String,
}

/// The claims of an attestation token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationClaims {
    /// Issuer (`veil-attestation`).
    pub iss: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not before (Unix seconds).
    pub nbf: u64,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// Unique token id (hex).
    pub jti: String,
    /// What the evidence proved.
    #[serde(flatten)]
    pub evidence: VerifiedClaims,
    /// The workload's runtime public key bound by the evidence (base64url): secrets released
    /// against this token are wrapped to it.
    pub runtime_public_key: String,
    /// Other runtime data bound by the evidence (base64url).
    pub runtime_data: String,
    /// The policy that passed.
    pub policy: PolicyRef,
}

/// One public key of a JWKS (RFC 7517), EC keys only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `EC`.
    pub kty: String,
    /// Curve: `P-256` or `P-384`.
    pub crv: String,
    /// X coordinate (base64url).
    pub x: String,
    /// Y coordinate (base64url).
    pub y: String,
    /// Key id.
    pub kid: String,
    /// Algorithm: `ES256` or `ES384`.
    pub alg: String,
    /// Key use: `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// A JSON Web Key Set, as served at `/.well-known/jwks.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// Signs attestation tokens.
pub struct TokenIssuer {
    alg: TokenAlgorithm,
    key: EncodingKey,
    pkcs8: zeroize::Zeroizing<Vec<u8>>,
    jwk: Jwk,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("alg", &self.alg)
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// A fresh signing key from the operating system's randomness.
    pub fn generate(alg: TokenAlgorithm) -> Result<Self> {
        let doc = EcdsaKeyPair::generate_pkcs8(alg.ring(), &SystemRandom::new())
            .map_err(|_| TeeError::Crypto("ECDSA key generation failed"))?;
        Self::from_pkcs8(alg, doc.as_ref())
    }

    /// A signing key from its PKCS#8 DER encoding (as written by [`TokenIssuer::pkcs8_der`]).
    pub fn from_pkcs8(alg: TokenAlgorithm, der: &[u8]) -> Result<Self> {
        let pair =
            EcdsaKeyPair::from_pkcs8(alg.ring(), der, &SystemRandom::new()).map_err(|e| {
                TeeError::BadRequest(format!("not a PKCS#8 {} signing key: {e}", alg.curve()))
            })?;
        let point = pair.public_key().as_ref();
        // Uncompressed SEC1 point: 0x04 ‖ x ‖ y.
        let coord = (point.len() - 1) / 2;
        let kid = hex::encode(&Sha256::digest(point)[..8]);
        let jwk = Jwk {
            kty: "EC".into(),
            crv: alg.curve().into(),
            x: URL_SAFE_NO_PAD.encode(&point[1..1 + coord]),
            y: URL_SAFE_NO_PAD.encode(&point[1 + coord..]),
            kid,
            alg: format!("{alg:?}"),
            use_: "sig".into(),
        };
        Ok(Self {
            alg,
            key: EncodingKey::from_ec_der(der),
            pkcs8: zeroize::Zeroizing::new(der.to_vec()),
            jwk,
        })
    }

    /// The private key as PKCS#8 DER, to persist it (keep the file private).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The algorithm.
    pub fn algorithm(&self) -> TokenAlgorithm {
        self.alg
    }

    /// The key id written in every token header.
    pub fn key_id(&self) -> &str {
        &self.jwk.kid
    }

    /// The public key set relying parties verify tokens with.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![self.jwk.clone()],
        }
    }

    /// Signs `claims` into a compact JWT.
    pub fn sign(&self, claims: &AttestationClaims) -> Result<String> {
        let mut header = Header::new(self.alg.jwt());
        header.kid = Some(self.jwk.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| TeeError::TokenRejected(format!("signing failed: {e}")))
    }
}

/// Verifies attestation tokens against a JWKS.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: BTreeMap<String, (Algorithm, DecodingKey)>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TokenVerifier {
    /// Trusts the EC keys of `jwks` (others are ignored; an empty result is an error).
    pub fn new(jwks: &Jwks) -> Result<Self> {
        let mut keys = BTreeMap::new();
        for k in &jwks.keys {
            let alg = match (k.kty.as_str(), k.crv.as_str(), k.alg.as_str()) {
                ("EC", "P-256", "ES256") => Algorithm::ES256,
                ("EC", "P-384", "ES384") => Algorithm::ES384,
                _ => continue,
            };
            let key = DecodingKey::from_ec_components(&k.x, &k.y)
                .map_err(|e| TeeError::TokenRejected(format!("JWKS key {}: {e}", k.kid)))?;
            keys.insert(k.kid.clone(), (alg, key));
        }
        if keys.is_empty() {
            return Err(TeeError::TokenRejected(
                "the JWKS holds no ES256/ES384 signing key".into(),
            ));
        }
        Ok(Self { keys })
    }

    /// Parses a JWKS document and trusts its keys.
    pub fn from_jwks_json(json: &str) -> Result<Self> {
        let jwks: Jwks = serde_json::from_str(json)
            .map_err(|e| TeeError::TokenRejected(format!("invalid JWKS: {e}")))?;
        Self::new(&jwks)
    }

    /// Whether the key `kid` is trusted.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The key id named in a token's header, if any.
    pub fn key_id_of(token: &str) -> Option<String> {
        jsonwebtoken::decode_header(token).ok()?.kid
    }

    /// Checks the signature, issuer and validity window of `token` at `now` (Unix seconds)
    /// and returns its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<AttestationClaims> {
        if token.len() > 64 * 1024 {
            return Err(TeeError::TokenRejected("token longer than 64 KiB".into()));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TeeError::TokenRejected(format!("malformed token: {e}")))?;
        let kid = header
            .kid
            .ok_or_else(|| TeeError::TokenRejected("token header names no key (kid)".into()))?;
        let (alg, key) = self.keys.get(&kid).ok_or_else(|| {
            TeeError::TokenRejected(format!(
                "token signed by key {kid}, which this verifier does not trust"
            ))
        })?;
        if header.alg != *alg {
            return Err(TeeError::TokenRejected(format!(
                "token algorithm {:?} does not match key {kid} ({alg:?})",
                header.alg
            )));
        }
        let mut validation = Validation::new(*alg);
        // Expiry is checked below against the caller's clock.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<AttestationClaims>(token, key, &validation)
            .map_err(|e| TeeError::TokenRejected(format!("invalid token: {e}")))?;
        let c = data.claims;
        if c.iss != ISSUER {
            return Err(TeeError::TokenRejected(format!(
                "token issued by {:?}, not {ISSUER}",
                c.iss
            )));
        }
        if now >= c.exp {
            return Err(TeeError::TokenRejected(format!(
                "token expired at {} (now {now})",
                c.exp
            )));
        }
        if now + 60 < c.nbf {
            return Err(TeeError::TokenRejected(format!(
                "token not valid before {} (now {now})",
                c.nbf
            )));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::TeeKind;

    fn claims(iat: u64, exp: u64) -> AttestationClaims {
        AttestationClaims {
            iss: ISSUER.into(),
            iat,
            nbf: iat,
            exp,
            jti: "00".into(),
            evidence: VerifiedClaims {
                tee: TeeKind::Sim,
                measurements: BTreeMap::from([("measurement".into(), "ab".into())]),
                signer: None,
                product_id: None,
                security_version: Some(1),
                debug: false,
                tcb_status: "Simulated".into(),
                advisory_ids: vec![],
                report_data: "00".into(),
                vmpl: None,
                tcb: Default::default(),
                signing_key: None,
            },
            runtime_public_key: "AAAA".into(),
            runtime_data: String::new(),
            policy: PolicyRef {
                name: "p".into(),
                sha256: "00".into(),
            },
        }
    }

    #[test]
    fn tokens_round_trip_and_are_refused_when_expired_or_foreign() {
        for alg in [TokenAlgorithm::ES256, TokenAlgorithm::ES384] {
            let issuer = TokenIssuer::generate(alg).unwrap();
            let verifier = TokenVerifier::new(&issuer.jwks()).unwrap();
            let token = issuer.sign(&claims(1000, 2000)).unwrap();
            assert_eq!(verifier.verify(&token, 1500).unwrap(), claims(1000, 2000));
            let err = verifier.verify(&token, 2000).unwrap_err();
            assert!(err.to_string().contains("expired"), "{err}");
            // Reloaded from PKCS#8, the key is the same key.
            let again = TokenIssuer::from_pkcs8(alg, issuer.pkcs8_der()).unwrap();
            assert_eq!(again.jwks(), issuer.jwks());
            // A token signed by another key is refused.
            let other = TokenIssuer::generate(alg).unwrap();
            let foreign = other.sign(&claims(1000, 2000)).unwrap();
            let err = verifier.verify(&foreign, 1500).unwrap_err();
            assert!(err.to_string().contains("does not trust"), "{err}");
            // Same kid but a forged signature: flip a byte of the payload.
            let mut parts: Vec<String> = token.split('.').map(String::from).collect();
            let mut payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
            let pos = payload.iter().position(|&b| b == b'S').unwrap();
            payload[pos] = b'T';
            parts[1] = URL_SAFE_NO_PAD.encode(payload);
            let err = verifier.verify(&parts.join("."), 1500).unwrap_err();
            assert!(err.to_string().contains("invalid token"), "{err}");
            // Garbage never panics.
            for junk in ["", ".", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
                assert!(verifier.verify(junk, 1500).is_err());
            }
        }
    }

    #[test]
    fn unsigned_and_hmac_tokens_are_refused() {
        let issuer = TokenIssuer::generate(TokenAlgorithm::ES256).unwrap();
        let verifier = TokenVerifier::new(&issuer.jwks()).unwrap();
        // alg=HS256 with the kid of the EC key and the public key as the HMAC secret.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(issuer.key_id().to_string());
        let forged = jsonwebtoken::encode(
            &header,
            &claims(1000, 2000),
            &EncodingKey::from_secret(issuer.jwks().keys[0].x.as_bytes()),
        )
        .unwrap();
        let err = verifier.verify(&forged, 1500).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }
}
