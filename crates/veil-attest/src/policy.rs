//! Policies: what verified claims must say before the attestation service issues a token, or
//! before the key broker releases a secret.
//!
//! Two forms, both data the user writes:
//!
//! - **TOML allow-list** (the common case):
//!
//!   ```toml
//!   tee = ["sgx", "tdx"]                 # "sim" must be listed by name to accept the simulated TEE
//!   tcb_status = ["UpToDate"]            # the default; add e.g. "SWHardeningNeeded" to relax
//!   allow_debug = false                  # the default
//!   min_security_version = 2
//!   signers = ["…hex…"]
//!   product_ids = [1]
//!
//!   [measurements]                       # each named measurement must be one of the values
//!   mr_enclave = ["…hex…"]
//!   ```
//!
//!   Unknown keys are an error, so a typo never silently weakens a policy.
//!
//! - **Rego** (OPA's language, as Azure Attestation-style and Confidential Containers policies
//!   use), evaluated with `regorus`. The claims are `input`; the policy's package must define
//!   `allow` (true to pass) and may define `reasons` (strings explaining a denial). Simulated
//!   evidence additionally needs `allow_sim` to be true in the same package. A rule that is
//!   undefined (not written, or no body holds) is not true: a denial (403), never an error.
//!
//! The input is the claims as JSON: `tee`, `measurements`, `signer`, `product_id`,
//! `security_version`, `debug`, `tcb_status`, `advisory_ids`, `report_data` (and, for the key
//! broker, the rest of the token's claims).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Result, TeeError};
use crate::token::PolicyRef;

/// Largest policy text accepted.
const MAX_POLICY_LEN: usize = 1 << 20;

/// The TOML allow-list form of a policy.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllowList {
    /// Accepted TEE kinds (`sgx`, `tdx`, `snp`, `sim`). Empty: every hardware TEE, never `sim`.
    #[serde(default)]
    pub tee: Vec<String>,
    /// Accepted TCB statuses; empty means `["UpToDate"]`. Simulated evidence reports
    /// `Simulated` and is exempt (it is governed by `tee`).
    #[serde(default)]
    pub tcb_status: Vec<String>,
    /// Whether debug-mode TEEs (whose memory the host can read) are accepted.
    #[serde(default)]
    pub allow_debug: bool,
    /// Minimum security version (SGX ISV SVN, simulated SVN).
    #[serde(default)]
    pub min_security_version: Option<u16>,
    /// Accepted signers (hex); empty accepts any.
    #[serde(default)]
    pub signers: Vec<String>,
    /// Accepted product ids; empty accepts any.
    #[serde(default)]
    pub product_ids: Vec<u16>,
    /// For each named measurement, the accepted values (hex).
    #[serde(default)]
    pub measurements: BTreeMap<String, Vec<String>>,
}

impl AllowList {
    /// Every rule `claims` break (empty: allowed).
    pub fn violations(&self, claims: &Value) -> Vec<String> {
        let mut why = Vec::new();
        let tee = claims["tee"].as_str().unwrap_or("");
        let listed = self.tee.iter().any(|t| t.eq_ignore_ascii_case(tee));
        if tee == "sim" && !listed {
            why.push(
                "simulated TEE (no hardware protection) is not allowed: list \"sim\" in `tee` to accept it"
                    .to_string(),
            );
        } else if !self.tee.is_empty() && !listed {
            why.push(format!("TEE {tee:?} is not in {:?}", self.tee));
        }
        let status = claims["tcb_status"].as_str().unwrap_or("");
        let statuses: Vec<String> = if self.tcb_status.is_empty() {
            vec!["UpToDate".into()]
        } else {
            self.tcb_status.clone()
        };
        if tee != "sim" && !statuses.iter().any(|s| s == status) {
            why.push(format!("TCB status {status:?} is not in {statuses:?}"));
        }
        if claims["debug"].as_bool() != Some(false) && !self.allow_debug {
            why.push("the TEE runs in debug mode (its memory is readable by the host)".into());
        }
        if let Some(min) = self.min_security_version {
            match claims["security_version"].as_u64() {
                Some(v) if v >= u64::from(min) => {}
                Some(v) => why.push(format!("security version {v} is below {min}")),
                None => why.push(format!(
                    "the evidence carries no security version (minimum {min})"
                )),
            }
        }
        if !self.signers.is_empty() {
            let signer = claims["signer"].as_str().unwrap_or("");
            if !self.signers.iter().any(|s| s.eq_ignore_ascii_case(signer)) {
                why.push(format!("signer {signer:?} is not allowed"));
            }
        }
        if !self.product_ids.is_empty() {
            let id = claims["product_id"].as_u64();
            if !self.product_ids.iter().any(|p| Some(u64::from(*p)) == id) {
                why.push(format!(
                    "product id {id:?} is not in {:?}",
                    self.product_ids
                ));
            }
        }
        for (name, allowed) in &self.measurements {
            match claims["measurements"][name].as_str() {
                Some(m) if allowed.iter().any(|a| a.eq_ignore_ascii_case(m)) => {}
                Some(m) => why.push(format!("measurement {name} = {m} is not allowed")),
                None => why.push(format!("the evidence has no measurement {name}")),
            }
        }
        why
    }
}

#[derive(Clone)]
enum Rules {
    AllowList(AllowList),
    Rego {
        engine: Box<regorus::Engine>,
        package: String,
    },
}

/// A policy ready to evaluate.
#[derive(Clone)]
pub struct Policy {
    reference: PolicyRef,
    rules: Rules,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.reference.name)
            .field("sha256", &self.reference.sha256)
            .finish()
    }
}

impl Policy {
    /// Reads a policy file: Rego if it ends in `.rego`, a TOML allow-list otherwise.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TeeError::InvalidPolicy(format!("{}: {e}", path.display())))?;
        let name = path
            .file_name()
            .map_or_else(|| "policy".into(), |n| n.to_string_lossy().into_owned());
        if path.extension().is_some_and(|e| e == "rego") {
            Self::rego(&name, &text)
        } else {
            Self::toml(&name, &text)
        }
    }

    /// Parses `text` as a policy of `kind` (`toml` or `rego`).
    pub fn parse(kind: &str, name: &str, text: &str) -> Result<Self> {
        match kind {
            "toml" => Self::toml(name, text),
            "rego" => Self::rego(name, text),
            other => Err(TeeError::InvalidPolicy(format!(
                "unknown policy kind {other:?} (toml or rego)"
            ))),
        }
    }

    /// A TOML allow-list policy.
    pub fn toml(name: &str, text: &str) -> Result<Self> {
        check_len(text)?;
        let list: AllowList =
            toml::from_str(text).map_err(|e| TeeError::InvalidPolicy(format!("{name}: {e}")))?;
        Ok(Self::from_allow_list(name, text, list))
    }

    /// A policy from an allow-list built in code (`text` is what its hash covers).
    pub fn from_allow_list(name: &str, text: &str, list: AllowList) -> Self {
        Self {
            reference: reference(name, text),
            rules: Rules::AllowList(list),
        }
    }

    /// A Rego policy; its package must define `allow`.
    pub fn rego(name: &str, text: &str) -> Result<Self> {
        check_len(text)?;
        let mut engine = regorus::Engine::new();
        let package = engine
            .add_policy(name.to_string(), text.to_string())
            .map_err(|e| TeeError::InvalidPolicy(format!("{name}: {e}")))?;
        // Bound evaluation time: a policy is data, and data must not hang the service.
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: std::time::Duration::from_millis(200),
            check_interval: std::num::NonZeroU32::MIN,
        });
        let policy = Self {
            reference: reference(name, text),
            rules: Rules::Rego {
                engine: Box::new(engine),
                package,
            },
        };
        // Evaluate once on empty claims so a policy without `allow` fails at load time.
        if let Rules::Rego { engine, package } = &policy.rules {
            let mut e = (**engine).clone();
            e.set_input(regorus::Value::new_object());
            if let Err(err) = e.eval_rule(format!("{package}.allow")) {
                return Err(TeeError::InvalidPolicy(format!(
                    "{name}: evaluating {package}.allow: {err}"
                )));
            }
        }
        Ok(policy)
    }

    /// The name and hash written into tokens.
    pub fn reference(&self) -> &PolicyRef {
        &self.reference
    }

    /// Evaluates the policy on `claims` (JSON): `Ok` if allowed, otherwise
    /// [`TeeError::PolicyDenied`] naming every failed rule.
    pub fn evaluate(&self, claims: &Value) -> Result<()> {
        let reasons = match &self.rules {
            Rules::AllowList(list) => list.violations(claims),
            Rules::Rego { engine, package } => rego_violations(engine, package, claims)?,
        };
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(TeeError::PolicyDenied {
                policy: self.reference.name.clone(),
                reasons,
            })
        }
    }
}

fn check_len(text: &str) -> Result<()> {
    if text.len() > MAX_POLICY_LEN {
        return Err(TeeError::InvalidPolicy(format!(
            "policy of {} bytes exceeds {MAX_POLICY_LEN}",
            text.len()
        )));
    }
    Ok(())
}

fn reference(name: &str, text: &str) -> PolicyRef {
    PolicyRef {
        name: name.to_string(),
        sha256: hex::encode(Sha256::digest(text.as_bytes())),
    }
}

fn rego_violations(engine: &regorus::Engine, package: &str, claims: &Value) -> Result<Vec<String>> {
    let mut e = engine.clone();
    let input = regorus::Value::from_json_str(&claims.to_string())
        .map_err(|err| TeeError::InvalidPolicy(format!("claims as Rego input: {err}")))?;
    e.set_input(input);
    // A rule is true only if it is defined and evaluates to `true`. A rule the policy does
    // not define is undefined in Rego, hence not true (a denial, 403), never an error:
    // query the rule's path (which yields no result when undefined) rather than
    // `eval_rule` (which fails on a path that names no rule).
    let eval_true = |e: &mut regorus::Engine, rule: &str| -> Result<bool> {
        let results = e
            .eval_query(format!("{package}.{rule}"), false)
            .map_err(|err| TeeError::InvalidPolicy(format!("evaluating {rule}: {err}")))?;
        Ok(results.result.iter().any(|r| {
            r.expressions
                .iter()
                .any(|x| x.value == regorus::Value::Bool(true))
        }))
    };
    let mut why = Vec::new();
    if !eval_true(&mut e, "allow")? {
        if let Ok(v) = e.eval_rule(format!("{package}.reasons")) {
            let json = v.to_json_str().unwrap_or_default();
            if let Ok(Value::Array(items)) = serde_json::from_str::<Value>(&json) {
                why.extend(items.iter().filter_map(|i| i.as_str().map(String::from)));
            }
        }
        if why.is_empty() {
            why.push(format!("{package}.allow is not true"));
        }
    }
    if claims["tee"].as_str() == Some("sim") && !eval_true(&mut e, "allow_sim")? {
        why.push(format!(
            "simulated TEE (no hardware protection) is not allowed: define {package}.allow_sim := true to accept it"
        ));
    }
    Ok(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sgx() -> Value {
        json!({
            "tee": "sgx", "measurements": {"mr_enclave": "aa", "mr_signer": "bb"},
            "signer": "bb", "product_id": 1, "security_version": 3, "debug": false,
            "tcb_status": "UpToDate", "advisory_ids": [], "report_data": "00"
        })
    }

    #[test]
    fn allow_list_names_every_failed_rule() {
        let p = Policy::toml(
            "strict.toml",
            r#"
            tee = ["sgx"]
            min_security_version = 2
            signers = ["BB"]
            [measurements]
            mr_enclave = ["aa"]
            "#,
        )
        .unwrap();
        p.evaluate(&sgx()).unwrap();
        let mut bad = sgx();
        bad["measurements"]["mr_enclave"] = json!("cc");
        bad["debug"] = json!(true);
        bad["tcb_status"] = json!("OutOfDate");
        bad["security_version"] = json!(1);
        let Err(TeeError::PolicyDenied { reasons, .. }) = p.evaluate(&bad) else {
            panic!("denied expected")
        };
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        // Simulated evidence needs "sim" by name, even in a policy that lists nothing.
        let open = Policy::toml("open.toml", "").unwrap();
        let sim = json!({"tee": "sim", "debug": false, "tcb_status": "Simulated"});
        let err = open.evaluate(&sim).unwrap_err().to_string();
        assert!(err.contains("simulated"), "{err}");
        Policy::toml("sim.toml", r#"tee = ["sim"]"#)
            .unwrap()
            .evaluate(&sim)
            .unwrap();
        // Typos are errors, not silently ignored rules.
        assert!(Policy::toml("typo.toml", "allow_debugg = true").is_err());
        assert!(Policy::toml("bad.toml", "tee = 3").is_err());
    }

    #[test]
    fn rego_policies_decide_and_explain() {
        let rego = r#"
            package veil.attestation
            import rego.v1
            default allow := false
            allow if {
                input.tee == "sgx"
                input.measurements.mr_enclave == "aa"
                not input.debug
            }
            reasons contains "wrong enclave" if input.measurements.mr_enclave != "aa"
        "#;
        let p = Policy::rego("p.rego", rego).unwrap();
        p.evaluate(&sgx()).unwrap();
        let mut bad = sgx();
        bad["measurements"]["mr_enclave"] = json!("cc");
        let err = p.evaluate(&bad).unwrap_err().to_string();
        assert!(err.contains("wrong enclave"), "{err}");
        // Simulated evidence also needs allow_sim.
        let sim_rego = r#"
            package veil.sim
            import rego.v1
            allow if input.tee == "sim"
        "#;
        let sim = json!({"tee": "sim", "debug": false});
        let err = Policy::rego("s.rego", sim_rego)
            .unwrap()
            .evaluate(&sim)
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_sim"), "{err}");
        let ok = format!("{sim_rego}\nallow_sim := true\n");
        Policy::rego("s.rego", &ok).unwrap().evaluate(&sim).unwrap();
        // Syntax errors are load-time errors.
        assert!(Policy::rego("x.rego", "package x\nallow if {").is_err());
    }
}
