//! Encrypted inference of a committed digits model with CKKS, client and server split by
//! bytes: the client makes keys and encrypts the test images, the server evaluates with the
//! public context only, the client decrypts with noise flooding. Prints one JSON object per
//! run (what `bench/ml_vs_tenseal.py` reads).
//!
//! ```sh
//! cargo run --release -p veil-ml --example he_digits -- cnn single 360   # model, packing, images
//! cargo run --release -p veil-ml --example he_digits -- cnn batch 360
//! ```
//!
//! Latency packing times every image separately (encrypt, server, decrypt each); batch
//! packing sends all the images in one query and reports the time per image of that query,
//! and the throughput a full batch (N/2 images, the test set repeated) reaches.

use std::time::Instant;

// The allocator the `veil` binary uses: key switching allocates large, short-lived buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use veil_he::ckks::{CkksVector, VectorContext};
use veil_ml::data::LabelledData;
use veil_ml::he::{CompileOptions, EncryptedSamples, Packing, Plan};
use veil_ml::{MlError, Result};

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "cnn".into());
    let packing = match args.next().as_deref() {
        None | Some("single") => Packing::Single,
        Some("batch") => Packing::Batch,
        Some(other) => {
            return Err(MlError::Input {
                reason: format!("packing `{other}`: single or batch"),
            })
        }
    };
    let images = match args.next() {
        Some(s) => s.parse::<usize>().map_err(|_| MlError::Input {
            reason: format!("`{s}` is not a number of images"),
        })?,
        None => 360,
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let model = veil_ml::onnx::import_file(format!("{dir}/{name}.onnx"))?;
    let text =
        std::fs::read_to_string(format!("{dir}/digits_test.csv")).map_err(|e| MlError::Input {
            reason: e.to_string(),
        })?;
    let mut data = LabelledData::from_csv(&text, 1.0 / 16.0)?;
    let images = images.clamp(1, data.len());
    let options = CompileOptions {
        packing,
        calibration: data.samples[..60].to_vec(),
        ..CompileOptions::default()
    };
    let plan = Plan::compile(&model.graph, &options)?;
    data.samples.truncate(images);
    data.labels.truncate(images);

    let t = Instant::now();
    let client = plan.keygen()?;
    let keygen_s = t.elapsed().as_secs_f64();
    let public = client.make_public().public_to_bytes();
    let server = VectorContext::from_public_bytes(&public, None)?;

    let mut outputs = Vec::with_capacity(images);
    let (mut encrypt_s, mut server_s, mut decrypt_s) = (0.0, 0.0, 0.0);
    let (mut query_bytes, mut answer_bytes) = (0usize, 0usize);
    let mut full_batch_per_s = None;
    match packing {
        Packing::Single => {
            // The server encodes the model's matrices once for the client's parameters.
            let t = Instant::now();
            let prepared = plan.prepare(&server)?;
            server_s += t.elapsed().as_secs_f64();
            for x in &data.samples {
                let t = Instant::now();
                let q = plan.encrypt(&client, x)?.to_bytes();
                encrypt_s += t.elapsed().as_secs_f64();
                query_bytes = q.len();
                let t = Instant::now();
                let a = prepared
                    .evaluate(&CkksVector::from_bytes(&server, &q)?)?
                    .to_bytes();
                server_s += t.elapsed().as_secs_f64();
                answer_bytes = a.len();
                let t = Instant::now();
                let (out, _) = plan.decrypt(&CkksVector::from_bytes(&client, &a)?)?;
                decrypt_s += t.elapsed().as_secs_f64();
                outputs.push(out);
            }
        }
        Packing::Batch => {
            let t = Instant::now();
            let q = plan.encrypt_samples(&client, &data.samples)?.to_bytes();
            encrypt_s = t.elapsed().as_secs_f64();
            query_bytes = q.len();
            let t = Instant::now();
            let a = plan
                .evaluate_samples(&EncryptedSamples::from_bytes(&server, &q)?)?
                .to_bytes();
            server_s = t.elapsed().as_secs_f64();
            answer_bytes = a.len();
            let t = Instant::now();
            let (outs, _) = plan.decrypt_samples(&EncryptedSamples::from_bytes(&client, &a)?)?;
            decrypt_s = t.elapsed().as_secs_f64();
            outputs = outs;
            // A full batch: the evaluation's cost does not depend on the fill, measure it.
            let per = plan.samples_per_evaluation();
            let full: Vec<Vec<f64>> = (0..per).map(|i| data.samples[i % images].clone()).collect();
            let q = plan.encrypt_samples(&server, &full)?;
            let t = Instant::now();
            let _ = plan.evaluate_samples(&q)?;
            full_batch_per_s = Some(per as f64 / t.elapsed().as_secs_f64());
        }
    }
    let (mut agree, mut correct, mut plain_correct) = (0usize, 0usize, 0usize);
    for ((x, &label), out) in data.samples.iter().zip(&data.labels).zip(&outputs) {
        let reference = &model.graph.run(x)?[0];
        let (e, p) = (argmax(out), argmax(reference));
        agree += usize::from(e == p);
        correct += usize::from(e as i64 == label);
        plain_correct += usize::from(p as i64 == label);
    }
    let n = images as f64;
    let p = plan.parameter_choice();
    println!(
        "{{\"model\":\"{name}\",\"packing\":\"{}\",\"images\":{images},\"degree\":{},\
         \"moduli_bits\":{:?},\"scale_bits\":{},\"depth\":{},\"galois_keys\":{},\
         \"public_bytes\":{},\"query_bytes\":{query_bytes},\"answer_bytes\":{answer_bytes},\
         \"keygen_s\":{keygen_s:.4},\"encrypt_s_per_image\":{:.6},\"server_s_per_image\":{:.6},\
         \"decrypt_s_per_image\":{:.6},\"full_batch_images_per_s\":{},\"agreement\":{:.4},\
         \"accuracy\":{:.4},\"plain_accuracy\":{:.4}}}",
        packing.name(),
        p.degree,
        p.moduli_bits,
        p.scale_bits,
        plan.depth(),
        plan.rotation_steps().len(),
        public.len(),
        encrypt_s / n,
        server_s / n,
        decrypt_s / n,
        full_batch_per_s.map_or("null".to_string(), |v| format!("{v:.1}")),
        agree as f64 / n,
        correct as f64 / n,
        plain_correct as f64 / n,
    );
    Ok(())
}
