//! Private set intersection with known answers: partial, empty and full overlaps, duplicates,
//! cardinality only (in-process; the CLI tests run it between processes over TLS).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use veil_mpc::memory::run;
use veil_mpc::{psi, FixedPoint};

fn ids(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range.map(|i| format!("patient-{i}").into_bytes()).collect()
}

fn psi_run(
    receiver: Vec<Vec<u8>>,
    sender: Vec<Vec<u8>>,
    cardinality_only: bool,
) -> (psi::PsiOutcome, usize) {
    let out = run(2, FixedPoint::default(), move |p| {
        if p.id() == 0 {
            Ok((
                Some(psi::receive(
                    p.exchange_mut(),
                    1,
                    &receiver,
                    cardinality_only,
                )?),
                0,
            ))
        } else {
            Ok((
                None,
                psi::send(p.exchange_mut(), 0, &sender, cardinality_only)?,
            ))
        }
    })
    .unwrap();
    (out[0].0.clone().unwrap(), out[1].1)
}

#[test]
fn intersections_are_exact() {
    let (o, seen) = psi_run(ids(0..100), ids(60..300), false);
    let mut got = o.intersection.clone();
    got.sort();
    let mut want = ids(60..100);
    want.sort();
    assert_eq!(got, want);
    assert_eq!((o.size, o.other_set_size, seen), (40, 240, 100));

    let (o, _) = psi_run(ids(0..50), ids(50..80), false);
    assert!(o.intersection.is_empty() && o.size == 0);

    let (o, _) = psi_run(ids(0..50), ids(0..50), false);
    assert_eq!(o.size, 50, "full overlap");
    let mut got = o.intersection.clone();
    got.sort();
    let mut want = ids(0..50);
    want.sort();
    assert_eq!(got, want);

    let mut dup = ids(0..20);
    dup.extend(ids(0..20));
    let (o, seen) = psi_run(dup, ids(0..20), false);
    assert_eq!((o.size, seen), (20, 20), "duplicates count once");

    let (o, _) = psi_run(ids(0..30), ids(10..40), true);
    assert_eq!(o.size, 20);
    assert!(o.intersection.is_empty(), "only the size");

    let (o, _) = psi_run(Vec::new(), ids(0..5), false);
    assert_eq!(o.size, 0);
}

fn normalized(items: &[&str], n: psi::Normalization) -> Vec<Vec<u8>> {
    items.iter().map(|i| n.apply(i).into_bytes()).collect()
}

#[test]
fn variants_of_the_same_identifier_match_when_normalised_alike() {
    // Issue 12, item 24: only white space was trimmed, so the upper-case variant of an
    // e-mail address was missed.
    let receiver = [
        "ann@example.com",
        "bob@example.com",
        "straße 5",
        "ｃａｔ@example.com",
        "ﬁona@example.com",
        "οδοσ",
    ];
    let sender = [
        "  ANN@Example.COM ",
        "dan@example.com",
        "STRASSE 5",
        "cat@example.com",
        "FIONA@example.com",
        "ΟΔΟΣ",
    ];
    // Trimming alone (the default): none of the variants match.
    let t = psi::Normalization::TRIM;
    let (o, _) = psi_run(normalized(&receiver, t), normalized(&sender, t), false);
    assert_eq!(o.size, 0, "{o:?}");
    // Case folding: ANN, STRASSE, ΟΔΟΣ and the ligature (its upper case is FI); NFKC
    // besides: the full-width form.
    let fold = psi::Normalization::parse("trim,casefold").unwrap();
    let (o, _) = psi_run(
        normalized(&receiver, fold),
        normalized(&sender, fold),
        false,
    );
    assert_eq!(o.size, 4, "{o:?}");
    let all = psi::Normalization::parse("trim,casefold,nfkc").unwrap();
    assert_eq!(all, psi::Normalization::ALL);
    let (o, _) = psi_run(normalized(&receiver, all), normalized(&sender, all), false);
    let mut got: Vec<String> = o
        .intersection
        .iter()
        .map(|i| String::from_utf8(i.clone()).unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "ann@example.com",
            "cat@example.com",
            "fiona@example.com",
            "strasse 5",
            "οδος"
        ]
    );
}

#[test]
fn normalisations_parse_and_print_canonically() {
    let n = psi::Normalization::parse("nfkc, trim").unwrap();
    assert_eq!(n.to_string(), "trim+nfkc");
    assert_eq!(
        psi::Normalization::parse(&n.to_string()).unwrap(),
        n,
        "the printed form parses back"
    );
    assert_eq!(
        psi::Normalization::parse("none").unwrap().to_string(),
        "none"
    );
    assert_eq!(psi::Normalization::default(), psi::Normalization::TRIM);
    assert!(psi::Normalization::parse("lowercase,soundex").is_err());
    assert_eq!(psi::Normalization::NONE.apply(" A "), " A ");
    // NFKC of a decomposed é is the precomposed one.
    let nfkc = psi::Normalization::parse("nfkc").unwrap();
    assert_eq!(nfkc.apply("e\u{301}"), "\u{e9}");
}
