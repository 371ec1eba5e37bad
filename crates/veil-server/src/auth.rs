//! API tokens: who is calling.
//!
//! The service keeps only each token's SHA-256 and compares the presented token's hash with
//! **every** registered one in constant time (no early exit), so neither the answer nor its
//! timing says which principals exist; a missing, blank, malformed or unknown token gets the
//! same 401. The caller is the token's owner, never a field of the request.

use axum::http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::HttpError;

/// A principal (an analyst, an inference client): a name and the SHA-256 of their API token.
#[derive(Clone)]
pub struct Principal {
    /// The principal's name.
    pub name: String,
    /// SHA-256 of the API token.
    pub token_sha256: [u8; 32],
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The SHA-256 of an API token, as the configuration stores it.
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The SHA-256 of the bearer token in `headers`; `None` when there is none or it is blank
/// (a blank token matches nobody, not even a configured hash of "").
pub fn bearer_sha256(headers: &HeaderMap) -> Option<[u8; 32]> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(token_sha256)
}

/// Parses a configured `token_sha256` (64 hex digits).
pub fn parse_token_hash(hex_digits: &str) -> Option<[u8; 32]> {
    hex::decode(hex_digits.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
}

/// The principals admitted to one part of the service.
#[derive(Clone, Debug, Default)]
pub struct Principals(Vec<Principal>);

impl Principals {
    /// Admits `p`; names must be non-empty and distinct.
    pub fn add(&mut self, p: Principal) -> Result<(), String> {
        if p.name.is_empty() || self.0.iter().any(|x| x.name == p.name) {
            return Err(format!(
                "names must be non-empty and distinct ({:?})",
                p.name
            ));
        }
        self.0.push(p);
        Ok(())
    }

    /// The principal owning the bearer token in `headers`: every hash is compared, in constant
    /// time, whatever the token.
    pub fn owner(&self, headers: &HeaderMap) -> Result<&str, HttpError> {
        // A missing or empty token matches nobody (not even a configured hash of ""); the
        // early answer depends only on the request, never on who the principals are.
        let presented = bearer_sha256(headers);
        let mut found = None;
        if let Some(presented) = presented {
            for p in &self.0 {
                if bool::from(p.token_sha256.ct_eq(&presented)) {
                    found = Some(p.name.as_str());
                }
            }
        }
        found.ok_or_else(|| {
            HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid API token is required (Authorization: Bearer <token>)",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty or blank token matches nobody, even a principal configured (carelessly) with
    /// the hash of the empty string.
    #[test]
    fn a_blank_token_matches_nobody() {
        let mut s = Principals::default();
        let added = s.add(Principal {
            name: "careless".into(),
            token_sha256: token_sha256(""),
        });
        assert!(added.is_ok());
        for value in ["Bearer ", "Bearer    ", "Bearer", "", "Bearer  x "] {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                axum::http::HeaderValue::from_static(value),
            );
            assert!(s.owner(&h).is_err(), "{value:?}");
        }
        assert!(s
            .add(Principal {
                name: "real".into(),
                token_sha256: token_sha256("x"),
            })
            .is_ok());
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Bearer x"),
        );
        assert_eq!(s.owner(&h).ok(), Some("real"));
    }

    #[test]
    fn names_are_distinct() {
        let mut s = Principals::default();
        let p = Principal {
            name: "a".into(),
            token_sha256: [1; 32],
        };
        assert!(s.add(p.clone()).is_ok());
        assert!(s.add(p).is_err());
    }
}
