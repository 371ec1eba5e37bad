//! Verifies a real SGX DCAP quote (recorded on Intel hardware, read from the `shared/vectors`
//! folder beside the repository or from `VEIL_VECTORS`) against its collateral, then a
//! simulated quote that binds a nonce and a public key.
//!
//! ```sh
//! cargo run -p veil-tee --example verify_quote
//! ```

use veil_tee::binding::{check_binding, expected_report_data};
use veil_tee::evidence::dcap::DcapVerifier;
use veil_tee::evidence::sim::{SimVerifier, SimulatedPlatform};
use veil_tee::evidence::Verifier;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::var("VEIL_VECTORS").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vectors").to_string()
    });
    match std::fs::read(format!("{dir}/dcap/sgx_quote")) {
        Ok(quote) => {
            let collateral =
                std::fs::read_to_string(format!("{dir}/dcap/sgx_quote_collateral.json"))?;
            let verifier = DcapVerifier::from_collateral_json(&collateral)?;
            let july_2025 = 1_751_328_000;
            let claims = verifier.verify(&quote, july_2025)?;
            println!(
                "SGX quote: MRENCLAVE {} TCB {} advisories {:?}",
                claims.measurements["mr_enclave"], claims.tcb_status, claims.advisory_ids
            );
            match verifier.verify(&quote, july_2025 + 3 * 365 * 86_400) {
                Ok(_) => println!("unexpected: the quote still verifies three years later"),
                Err(e) => println!("three years later: {e}"),
            }
        }
        Err(e) => println!("real SGX quote skipped ({dir}/dcap/sgx_quote: {e})"),
    }

    let platform = SimulatedPlatform::generate()?;
    let nonce = b"fresh nonce from the verifier";
    let workload_key = b"workload public key";
    let evidence = platform.issue(
        &[0x42; 48],
        &expected_report_data(nonce, workload_key, b""),
        false,
        1,
    );
    let sim = SimVerifier::new(&platform.public_key())?.verify(&evidence, 0)?;
    check_binding(&sim, nonce, workload_key, b"")?;
    println!(
        "simulated evidence verified and bound (tee = {})",
        sim.tee.name()
    );
    Ok(())
}
