//! The query fingerprint: one `query_hash` for one statement, whatever its literals, spacing,
//! comments, keyword case or driver placeholder style.
//!
//! Key design choice: a token-level normalisation, not a SQL parser. It cannot fail and needs
//! no grammar, so it is small enough to implement identically in every producer language (the
//! Python client has the same rules, `clients/python/perfstream_client/fingerprint.py`), and
//! `testdata/fingerprint/vectors.json` holds both implementations to the same outputs. The
//! price is that two statements a parser would call equal can still differ here (`a=b` versus
//! `b=a`); what matters is that literals never split a statement into many series.
//!
//! The specification is the "Query fingerprint" section of `docs/producers.md`: lexing
//! ([`lex`]), then the collapses of `IN (…)` lists and repeated `VALUES` rows, rendering with
//! fixed spacing, and the hash: the first 8 bytes of SHA-256 of the normalised text, as 16
//! lower-case hex digits.

mod lex;

use perfstream_events::QueryType;
use sha2::{Digest, Sha256};

use lex::Token;

/// What a statement's text gives: its normalised text, its hash and its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// 16 lower-case hex digits: the first 8 bytes of SHA-256 of `normalized`.
    pub hash: String,
    /// The statement with literals and placeholders as `?`, lower-case keywords and fixed
    /// spacing; what analysts read in `query_catalog`.
    pub normalized: String,
    /// From the statement's first word (for `WITH`, the first verb outside parentheses).
    pub query_type: QueryType,
}

/// The fingerprint of `sql`.
pub fn fingerprint(sql: &str) -> Fingerprint {
    let mut toks = lex::tokens(sql);
    collapse_in_lists(&mut toks);
    collapse_values_rows(&mut toks);
    while matches!(toks.last(), Some(Token::Punct(p)) if p == ";") {
        toks.pop();
    }
    let normalized = render(&toks);
    Fingerprint {
        hash: hash_normalized(&normalized),
        query_type: query_type(&toks),
        normalized,
    }
}

/// The hash of an already normalised text.
pub fn hash_normalized(normalized: &str) -> String {
    let digest = Sha256::digest(normalized.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn is_punct(t: &Token, p: &str) -> bool {
    matches!(t, Token::Punct(q) if q == p)
}

fn is_word(t: &Token, w: &str) -> bool {
    matches!(t, Token::Word(v) if v == w)
}

/// Rule 13: `in (?, ?, …)` becomes `in (?)` when the list holds nothing but values.
fn collapse_in_lists(toks: &mut Vec<Token>) {
    let mut i = 0;
    while i + 2 < toks.len() {
        if is_word(&toks[i], "in") && is_punct(&toks[i + 1], "(") {
            let mut j = i + 2;
            let mut values = 0;
            loop {
                if toks.get(j) != Some(&Token::Value) {
                    break;
                }
                values += 1;
                j += 1;
                if toks.get(j).is_some_and(|t| is_punct(t, ",")) {
                    j += 1;
                } else {
                    break;
                }
            }
            if values > 1 && toks.get(j).is_some_and(|t| is_punct(t, ")")) {
                toks.drain(i + 3..j);
            }
        }
        i += 1;
    }
}

/// The index of the `)` matching the `(` at `open`, if any.
fn closing(toks: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (k, t) in toks.iter().enumerate().skip(open) {
        if is_punct(t, "(") {
            depth += 1;
        } else if is_punct(t, ")") {
            depth -= 1;
            if depth == 0 {
                return Some(k);
            }
        }
    }
    None
}

/// Rule 14: after `values`, a row equal (token for token) to the row before it is dropped, so
/// a batch insert of 3 rows and one of 300 are one statement.
fn collapse_values_rows(toks: &mut Vec<Token>) {
    let mut i = 0;
    while i + 1 < toks.len() {
        if is_word(&toks[i], "values")
            && is_punct(&toks[i + 1], "(")
            && let Some(close) = closing(toks, i + 1)
        {
            let row = toks[i + 1..=close].to_vec();
            let next = close + 1;
            while toks.get(next).is_some_and(|t| is_punct(t, ","))
                && toks.get(next + 1..next + 1 + row.len()) == Some(&row[..])
            {
                toks.drain(next..next + 1 + row.len());
            }
            i = close;
        }
        i += 1;
    }
}

/// Rule 15: tokens joined by one space, except after `(`, `[`, `.`, `::` and before `)`, `[`,
/// `]`, `,`, `.`, `;`, `::`.
fn render(toks: &[Token]) -> String {
    let mut out = String::new();
    let mut prev: Option<&str> = None;
    for t in toks {
        let s = match t {
            Token::Word(w) => w.as_str(),
            Token::Quoted(q) => q.as_str(),
            Token::Value => "?",
            Token::Punct(p) => p.as_str(),
        };
        let glue_after = matches!(prev, Some("(" | "[" | "." | "::"));
        let glue_before = matches!(t, Token::Punct(p) if matches!(p.as_str(), ")" | "[" | "]" | "," | "." | ";" | "::"));
        if prev.is_some() && !glue_after && !glue_before {
            out.push(' ');
        }
        out.push_str(s);
        prev = Some(s);
    }
    out
}

/// Rule 16: the statement kind from its first word; for `with`, the first `select`, `insert`,
/// `update` or `delete` outside parentheses.
fn query_type(toks: &[Token]) -> QueryType {
    let verb = |w: &str| match w {
        "select" => Some(QueryType::Select),
        "insert" => Some(QueryType::Insert),
        "update" => Some(QueryType::Update),
        "delete" => Some(QueryType::Delete),
        _ => None,
    };
    let Some(first) = toks.iter().find_map(|t| match t {
        Token::Word(w) => Some(w.as_str()),
        _ => None,
    }) else {
        return QueryType::Other;
    };
    if first != "with" {
        return verb(first).unwrap_or(QueryType::Other);
    }
    let mut depth = 0i64;
    for t in toks {
        match t {
            Token::Punct(p) if p == "(" => depth += 1,
            Token::Punct(p) if p == ")" => depth -= 1,
            Token::Word(w) if depth == 0 => {
                if let Some(q) = verb(w) {
                    return q;
                }
            }
            _ => {}
        }
    }
    QueryType::Other
}

#[cfg(test)]
mod tests;
