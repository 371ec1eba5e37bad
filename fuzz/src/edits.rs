//! Shared by the fuzz targets: reads a fuzz input as edits of one of several valid
//! serialized objects (first byte: which object; next two: truncation length; then
//! (position: u16, value: u8) overwrites), so that inputs get past the magic bytes and the
//! 32-byte parameter fingerprint and reach the deeper checks.

/// The edited object, or `None` when the input is too short to describe edits.
pub fn edited(samples: &[Vec<u8>], data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 3 || samples.is_empty() {
        return None;
    }
    let mut obj = samples[usize::from(data[0]) % samples.len()].clone();
    if obj.is_empty() {
        return None;
    }
    let cut = usize::from(u16::from_le_bytes([data[1], data[2]]));
    for edit in data[3..].chunks_exact(3) {
        let pos = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % obj.len();
        obj[pos] = edit[2];
    }
    if cut < obj.len() {
        obj.truncate(cut);
    }
    Some(obj)
}

/// The small, insecure parameter set the targets use (fast; fuzzing needs no security).
#[allow(dead_code, reason = "not every target builds a CKKS context")]
pub fn fuzz_parameters() -> veil_he::ckks::CkksParameters {
    veil_he::ckks::CkksParameters::builder()
        .degree(64)
        .moduli_bits(&[60, 40, 60])
        .insecure_allow_below_128_bit_security()
        .build()
        .expect("valid fuzz parameters")
}
