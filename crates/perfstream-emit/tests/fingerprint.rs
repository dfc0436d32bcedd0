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

/// Differential check beyond the vectors: 3000 generated statements, fingerprinted by Rust and
/// by the Python client, must agree exactly. Needs the project's Python (`.venv/bin/python`,
/// or `PERFSTREAM_PYTHON`); fails loudly when it is missing.
#[test]
fn rust_and_python_agree_on_generated_statements() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    const PIECES: &[&str] = &[
        "SELECT",
        "select",
        " ",
        "\n",
        "\t",
        "*",
        "FROM",
        "t",
        "\"T\"",
        "\"t\"",
        "`x`",
        "WHERE",
        "id",
        "=",
        "-",
        "+",
        "1",
        "2.5",
        "1e3",
        ".5",
        "0x1f",
        "'a'",
        "'it''s'",
        "E'\\''",
        "$1",
        "$$x$$",
        "$q$ y $q$",
        "?",
        "%s",
        "%(n)s",
        "(",
        ")",
        ",",
        "IN",
        "in",
        "VALUES",
        "values",
        ";",
        "--c\n",
        "/* c */",
        "/* a /* b */ c */",
        "::",
        "int",
        "[",
        "]",
        ".",
        "AND",
        "<=",
        "->>",
        "@>",
        "ü",
        "Ä",
        "$",
        "'",
        "\"",
        "/*",
        "e",
        "x'1f'",
        "%",
        "||",
        "!=",
        "WITH",
        "with",
        "DELETE",
        "update",
        "insert",
        "n",
        "b'1'",
        "date'x'",
        "größe",
        "1e+",
        "1.2.3",
        "1_0e-2x",
        "6.",
        "\r",
        "\x0b",
        "\"a\"\"b\"",
        "\"Ab",
        "`a``b`",
        "$fn$",
        "$1a",
        "%(x",
        "E'\\",
        "--",
        "*/",
        "ÄBC",
        "_x$",
    ];
    let mut rng = StdRng::seed_from_u64(17);
    let corpus: Vec<String> = (0..3000)
        .map(|_| {
            let n = rng.random_range(0..30);
            (0..n)
                .map(|_| PIECES[rng.random_range(0..PIECES.len())])
                .collect()
        })
        .collect();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var_os("PERFSTREAM_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo.join(".venv/bin/python"));
    assert!(
        python.exists(),
        "Python not found at {} (set PERFSTREAM_PYTHON)",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("corpus.json");
    std::fs::write(&input, serde_json::to_vec(&corpus).unwrap()).unwrap();
    let script = "import json, sys\n\
                  sys.path.insert(0, sys.argv[1])\n\
                  from perfstream_client.fingerprint import fingerprint\n\
                  print(json.dumps([list(fingerprint(s)) for s in json.load(open(sys.argv[2], encoding='utf-8'))]))";
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(repo.join("clients/python"))
        .arg(&input)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: Vec<(String, String, String)> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(py.len(), corpus.len());
    let differ: Vec<String> = corpus
        .iter()
        .zip(&py)
        .filter_map(|(sql, (hash, normalized, query_type))| {
            let f = fingerprint::fingerprint(sql);
            let same = (
                f.hash.as_str(),
                f.normalized.as_str(),
                f.query_type.as_str(),
            ) == (hash.as_str(), normalized.as_str(), query_type.as_str());
            (!same).then(|| {
                format!(
                    "{sql:?}\n  rust   {:?}\n  python {normalized:?}",
                    f.normalized
                )
            })
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} differ, e.g.:\n{}",
        differ.len(),
        corpus.len(),
        differ[..differ.len().min(5)].join("\n")
    );
}
