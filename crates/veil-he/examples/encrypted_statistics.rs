//! Encrypted statistics: a data owner encrypts a column of values, a server that holds only
//! the public keys computes the mean, the variance and a linear model's scores, and the owner
//! decrypts the results.
//!
//! ```sh
//! cargo run --release -p veil-he --example encrypted_statistics
//! ```

use veil_he::ckks::{CkksContext, CkksParameters, CkksVector, Preset, VectorContext};

fn main() -> veil_he::Result<()> {
    // Data owner: parameters, keys, encryption.
    let params = CkksParameters::preset(Preset::N16384Depth7)?;
    let ckks = CkksContext::new(params)?;
    let steps = CkksVector::matmul_rotation_steps(8, 2);
    let owner = VectorContext::builder(ckks)
        .rotation_steps(&steps)
        .build()?;
    let incomes: Vec<f64> = (0..1000)
        .map(|i| 30.0 + ((i * 37) % 100) as f64 * 0.7)
        .collect();
    let n = incomes.len() as f64;
    let wire = CkksVector::encrypt(&owner, &incomes)?.to_bytes();
    println!(
        "encrypted {} values: {} KB on the wire",
        incomes.len(),
        wire.len() / 1000
    );

    // Server: public keys only.
    let server = owner.make_public();
    let x = CkksVector::from_bytes(&server, &wire)?;
    let mean = x.sum()?.mul_scalar(1.0 / n)?;
    let mean_of_squares = x.square()?.sum()?.mul_scalar(1.0 / n)?;
    let features = CkksVector::encrypt(&server, &[0.5, -1.0, 2.0, 0.25, 0.0, 1.5, -0.5, 1.0])?;
    let model = vec![
        vec![0.1, 0.2],
        vec![0.3, -0.1],
        vec![0.0, 0.5],
        vec![-0.2, 0.1],
        vec![0.4, 0.0],
        vec![0.1, 0.1],
        vec![0.2, -0.3],
        vec![0.0, 0.2],
    ];
    let scores = features.matmul(&model)?;
    let (mean_b, msq_b, scores_b) = (
        mean.to_bytes(),
        mean_of_squares.to_bytes(),
        scores.to_bytes(),
    );

    // Data owner: decrypt.
    let mean = CkksVector::from_bytes(&owner, &mean_b)?.decrypt()?[0];
    let msq = CkksVector::from_bytes(&owner, &msq_b)?.decrypt()?[0];
    let scores = CkksVector::from_bytes(&owner, &scores_b)?.decrypt()?;
    let true_mean = incomes.iter().sum::<f64>() / n;
    let true_var = incomes.iter().map(|v| (v - true_mean).powi(2)).sum::<f64>() / n;
    println!("mean      encrypted {mean:.6}  plaintext {true_mean:.6}");
    println!(
        "variance  encrypted {:.6}  plaintext {true_var:.6}",
        msq - mean * mean
    );
    println!("scores    encrypted {scores:.6?}");
    Ok(())
}
