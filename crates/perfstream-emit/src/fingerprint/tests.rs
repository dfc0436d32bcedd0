//! Properties of the fingerprint; the shared vectors are in `tests/fingerprint.rs`.

use proptest::prelude::*;

use super::*;

/// Pieces SQL text is made of, including the awkward ones (quotes, comments, signs).
fn sqlish() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
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
        "::",
        "int",
        "[",
        "]",
        ".",
        "AND",
        "<=",
        "->>",
        "ü",
        "$",
        "'",
        "\"",
        "/*",
        "e",
        "x'1f'",
    ]);
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    /// Fingerprinting a normalised text again changes nothing: a producer that sends
    /// already normalised text gets the same hash.
    #[test]
    fn normalising_twice_is_normalising_once(sql in sqlish()) {
        let once = fingerprint(&sql);
        let twice = fingerprint(&once.normalized);
        prop_assert_eq!(&twice.normalized, &once.normalized);
        prop_assert_eq!(&twice.hash, &once.hash);
    }

    /// No digit of a literal survives outside identifiers: `select 1` and `select 2` can
    /// never be two series.
    #[test]
    fn literals_do_not_change_the_hash(a in any::<i64>(), b in "[a-z ]{0,12}") {
        let one = fingerprint(&format!("SELECT * FROM t WHERE x = {a} AND s = '{b}'"));
        let two = fingerprint("select * from t where x = $1 and s = $2");
        prop_assert_eq!(one, two);
    }

    /// Any text gives a hash the schema accepts (16 hex digits, far below 128 bytes).
    #[test]
    fn every_text_has_a_hash(sql in any::<String>()) {
        let f = fingerprint(&sql);
        prop_assert_eq!(f.hash.len(), 16);
        prop_assert!(f.hash.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}

#[test]
fn the_docs_example_hash_is_sha256_of_test() {
    // docs/producers.md uses 9f86d081884c7d65 in its key example.
    assert_eq!(hash_normalized("test"), "9f86d081884c7d65");
}
