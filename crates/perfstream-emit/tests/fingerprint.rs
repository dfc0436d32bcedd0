//! The shared fingerprint vectors (`testdata/fingerprint/vectors.json`): the Rust
//! implementation must give exactly the normalised text, hash and kind of every statement. The
//! Python client is held to the same file (`clients/python/tests/test_fingerprint.py`).

use std::path::Path;

use perfstream_emit::fingerprint;

#[test]
fn every_shared_vector_matches() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fingerprint/vectors.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("vectors file")).unwrap();
    let vectors = doc["vectors"].as_array().expect("a vectors array");
    assert!(vectors.len() >= 50, "only {} vectors", vectors.len());
    let mut failures = Vec::new();
    for v in vectors {
        let sql = v["sql"].as_str().unwrap();
        let f = fingerprint::fingerprint(sql);
        let got = (
            f.normalized.as_str(),
            f.hash.as_str(),
            f.query_type.as_str(),
        );
        let want = (
            v["normalized"].as_str().unwrap(),
            v["hash"].as_str().unwrap(),
            v["query_type"].as_str().unwrap(),
        );
        if got != want {
            failures.push(format!(
                "{}: {sql:?}\n  want {want:?}\n  got  {got:?}",
                v["name"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors differ:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

/// The vectors' hashes are what the specification says (SHA-256 of the normalised text), so
/// a vector cannot be "fixed" by editing its hash alone.
#[test]
fn every_vector_hash_is_the_hash_of_its_normalised_text() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fingerprint/vectors.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for v in doc["vectors"].as_array().unwrap() {
        assert_eq!(
            fingerprint::hash_normalized(v["normalized"].as_str().unwrap()),
            v["hash"].as_str().unwrap(),
            "{}",
            v["name"]
        );
    }
}
