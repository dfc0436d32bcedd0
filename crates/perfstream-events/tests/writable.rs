//! Issue 12: an event that decodes is always writable. Every constraint the database enforces on
//! what an event becomes is checked when the event is validated, so a flush can never fail on a
//! value a message carried (a NUL in `service`, cache lookups beyond bigint, ...).
//!
//! The columns, their types, CHECKs, generated expressions and indexes are read from
//! `migrations/` (`writable/sql.rs`); `writable/columns.rs` says which event field feeds each;
//! the tests below check that validation covers every one, on both decoding paths. The property
//! test (`writable/hostile.rs`) then decodes hostile events and aggregates every accepted one
//! with the real window crate, alone and merged up to the documented counts.
//!
//! `PROPTEST_CASES` sets the property test's cases (default 256).

#[path = "writable/columns.rs"]
mod columns;
mod common;
#[path = "writable/hostile.rs"]
mod hostile;
#[path = "writable/sql.rs"]
mod sql;

use std::path::Path;

use columns::{NumField, Src, TABLES, TextField, classify, max_of};
use common::*;
use perfstream_events::validate::{MAX_COUNT, MAX_EVENT_TIME_US, exact_sums};
use perfstream_events::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use sql::{Schema, Token};

fn schema() -> Schema {
    sql::read_migrations(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations"))
}

fn accepts(e: &Event) -> Result<(), String> {
    let (fast, slow) = both_paths();
    let bytes = framed(e);
    let (a, b) = (fast.decode(&bytes, None), slow.decode(&bytes, None));
    assert_eq!(a, b, "the two paths disagree");
    a.map(|_| ()).map_err(|e| e.to_string())
}

/// Both paths refuse `e`, with a reason naming `field`; returns the error.
fn refuses(e: &Event, field: &str) -> DecodeError {
    let (fast, slow) = both_paths();
    let bytes = framed(e);
    let (a, b) = (fast.decode(&bytes, None), slow.decode(&bytes, None));
    assert_eq!(a, b, "the two paths disagree");
    let err = a.expect_err("refused");
    assert!(err.to_string().contains(field), "{err} should name {field}");
    err
}

/// Largest value of a column type, `None` for a type that is not an integer.
fn int_max(ty: &str) -> Option<i128> {
    Some(match ty {
        "bigint" | "int8" | "bigserial" => i64::MAX.into(),
        "integer" | "int" | "int4" | "serial" => i32::MAX.into(),
        "smallint" | "int2" => i16::MAX.into(),
        _ => return None,
    })
}

/// The length limit of a text type, `Some(None)` for unlimited `text`, `None` if not text.
fn text_limit(ty: &str) -> Option<Option<usize>> {
    if ty == "text" {
        return Some(None);
    }
    for prefix in ["varchar(", "character varying(", "char(", "character("] {
        if let Some(n) = ty.strip_prefix(prefix).and_then(|r| r.strip_suffix(')')) {
            return Some(Some(n.trim().parse().expect("a length")));
        }
    }
    None
}

/// A CHECK bounding a column's length: `length(c) <= n`, `char_length`, `octet_length`, `<`.
fn length_check(expr: &str, column: &str) -> Option<usize> {
    let t = sql::tokens(expr);
    match t.as_slice() {
        [
            Token::Ident(f),
            Token::Op(o),
            Token::Ident(c),
            Token::Op(cl),
            Token::Op(cmp),
            rest @ ..,
        ] if ["length", "char_length", "octet_length"].contains(&f.as_str())
            && o == "("
            && c == column
            && cl == ")"
            && (cmp == "<" || cmp == "=" || cmp == "<=") =>
        {
            let (eq, n) = match rest {
                [Token::Op(e), Token::Number(n)] if e == "=" => (true, *n),
                [Token::Number(n)] => (cmp == "=", *n),
                _ => return None,
            };
            usize::try_from(if eq || cmp == "<=" { n } else { n - 1 }).ok()
        }
        _ => None,
    }
}

/// Whether a CHECK on an event-fed column is one validation (or the window crate) guarantees.
fn check_holds(table: &str, column: &str, src: &Src, expr: &str) -> Result<(), String> {
    let t = sql::tokens(expr);
    let id = |s: &str| Token::Ident(s.into());
    let op = |s: &str| Token::Op(s.into());
    match src {
        Src::Internal { .. } => return Ok(()),
        Src::Enum(symbols) => {
            if let [Token::Ident(c), Token::Ident(kw), Token::Op(_), list @ ..] = t.as_slice()
                && c == column
                && kw == "in"
            {
                let allowed: Vec<&str> = list
                    .iter()
                    .filter_map(|t| match t {
                        Token::Str(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .collect();
                return match symbols.iter().find(|s| !allowed.contains(s)) {
                    None => Ok(()),
                    Some(s) => Err(format!("{table}.{column}: symbol {s:?} not in {expr}")),
                };
            }
        }
        Src::Text(fields) => {
            if let Some(n) = length_check(expr, column) {
                let max = fields.iter().map(|f| f.max).max().unwrap_or(0);
                return if max <= n {
                    Ok(())
                } else {
                    Err(format!(
                        "{table}.{column}: validation allows {max} bytes, {expr}"
                    ))
                };
            }
        }
        Src::Count => {
            // rollups are emitted only for keys with events
            if t == [id(column), op(">"), Token::Number(0)]
                || t == [id(column), op(">"), op("="), Token::Number(0)]
            {
                return Ok(());
            }
        }
        Src::Value(..) | Src::Sum(..) | Src::CacheCounter(_) => {
            // every figure is validated >= 0
            if t == [id(column), op(">"), op("="), Token::Number(0)] {
                return Ok(());
            }
        }
        Src::Time(_) => {
            // window_of: the end is start + window, no saturation below MAX_EVENT_TIME_US
            if expr.replace(' ', "") == "window_end>window_start" {
                return Ok(());
            }
        }
        Src::Generated => {}
    }
    Err(format!(
        "{table}.{column}: CHECK ({expr}) is not covered by validation: add a rule to \
         perfstream-events' validate.rs and teach this test about it"
    ))
}

#[test]
fn every_column_is_covered() {
    let schema = schema();
    let mut problems = Vec::new();
    for table in TABLES {
        let Some(t) = schema.tables.get(table) else {
            problems.push(format!("table {table} is not in the migrations any more"));
            continue;
        };
        for (column, c) in &t.columns {
            let Some(src) = classify(table, column) else {
                problems.push(format!(
                    "{table}.{column} ({}) is not classified: say in tests/writable/columns.rs \
                     which event field feeds it, and make validate.rs bound that field",
                    c.ty
                ));
                continue;
            };
            let ty = c.ty.as_str();
            let type_ok = match &src {
                Src::Internal { .. } => true,
                Src::Text(_) | Src::Enum(_) => text_limit(ty).is_some(),
                Src::Time(_) => ty == "timestamptz" || ty == "timestamp with time zone",
                Src::Generated => c.generated.is_some(),
                Src::Count | Src::Value(..) | Src::Sum(..) | Src::CacheCounter(_) => {
                    int_max(ty).is_some_and(|m| src.bound().is_some_and(|b| b <= m))
                }
            };
            if !type_ok {
                problems.push(format!(
                    "{table}.{column}: type {ty} cannot hold what feeds it"
                ));
            }
            if c.generated.is_some() && !matches!(src, Src::Generated) {
                problems.push(format!("{table}.{column} is generated: classify it so"));
            }
            if let (Src::Text(fields), Some(Some(n))) = (&src, text_limit(ty)) {
                for f in fields.iter().filter(|f| f.max > n) {
                    problems.push(format!(
                        "{table}.{column} is {ty}, but {} may have {} bytes",
                        f.name, f.max
                    ));
                }
            }
            for expr in t.checks_on(column) {
                if let Err(e) = check_holds(table, column, &src, expr) {
                    problems.push(e);
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

fn text_fields(schema: &Schema) -> Vec<TextField> {
    let mut out = columns::unstored_text();
    for table in TABLES {
        for (column, _) in &schema.tables[table].columns {
            if let Some(Src::Text(f)) = classify(table, column) {
                out.extend(f);
            }
        }
    }
    out
}

fn num_fields(schema: &Schema) -> Vec<NumField> {
    let mut out = columns::unstored_numbers();
    for table in TABLES {
        for (column, _) in &schema.tables[table].columns {
            if let Some(src) = classify(table, column) {
                out.extend(src.fields());
            }
        }
    }
    out
}

#[test]
fn text_fields_refuse_nul_and_over_long_values() {
    let schema = schema();
    let fields = text_fields(&schema);
    assert!(fields.len() >= 12, "{} text fields", fields.len());
    for f in fields {
        let at_max = "é".repeat(f.max / 2) + &"x".repeat(f.max % 2);
        assert_eq!(at_max.len(), f.max);
        accepts(&(f.set)(at_max.clone())).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        let err = refuses(&(f.set)(at_max + "x"), f.name);
        assert_eq!(err.kind(), "oversized", "{}", f.name);
        for nul in ["\0", "a\0", "\0b", "ab\0cd"] {
            let err = refuses(&(f.set)(nul.to_owned()), f.name);
            assert!(
                matches!(err, DecodeError::ContainsNul { ref field, at } if field == f.name && at == nul.find('\0').unwrap()),
                "{err:?}"
            );
            assert_eq!(err.kind(), "invalid_field");
        }
    }
}

#[test]
fn numbers_are_refused_above_their_limit() {
    let schema = schema();
    let fields = num_fields(&schema);
    assert!(fields.len() >= 20, "{} numeric fields", fields.len());
    for f in fields {
        accepts(&(f.set)(f.max)).unwrap_or_else(|e| panic!("{} at {}: {e}", f.name, f.max));
        accepts(&(f.set)(f.max / 2)).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        if !f.wire_max {
            let err = refuses(&(f.set)(f.max + 1), f.name);
            assert_eq!(err.kind(), "out_of_range", "{}: {err}", f.name);
            // (another rule may name it first: a ratio's numerator is a figure of its own)
            let (fast, _) = both_paths();
            assert!(fast.decode(&framed(&(f.set)(i64::MAX)), None).is_err());
        }
    }
}

#[test]
fn sums_of_the_documented_counts_stay_exact() {
    // The counts docs/producers.md promises, per field class.
    let schema = schema();
    for table in TABLES {
        for (column, _) in &schema.tables[table].columns {
            let Some(src) = classify(table, column) else {
                continue;
            };
            let (promised, per_event, ceiling) = match &src {
                Src::Sum(f, scale) => {
                    let per_event = max_of(f) * scale;
                    let promised = if *scale == 1_000_000 {
                        1 << 23
                    } else if f[0].wire_max {
                        1 << 32 // 32-bit figures
                    } else if f[0].name.ends_with("bytes") {
                        1 << 15
                    } else {
                        1 << 21 // durations and counts
                    };
                    assert!(
                        exact_sums(per_event) as i128 >= promised,
                        "{table}.{column}"
                    );
                    (promised, per_event, i64::MAX)
                }
                Src::CacheCounter(f) => (1 << 20, max_of(f), perfstream_window::CACHE_COUNTER_MAX),
                _ => continue,
            };
            assert!(
                i128::from(per_event) * promised <= i128::from(ceiling),
                "{table}.{column}: {promised} events of {per_event} overflow {ceiling}"
            );
        }
    }
}

/// Postgres refuses an index row above 2704 bytes (B-tree, 8 kB pages).
const BTREE_MAX_ROW: usize = 2704;

#[test]
fn index_rows_stay_under_the_btree_limit() {
    let schema = schema();
    for table in TABLES {
        let t = &schema.tables[table];
        assert!(!t.indexes.is_empty(), "{table} has no key");
        for index in &t.indexes {
            // header and alignment, then a 4-byte length per text value, 8 per other
            let size: usize = 8 + index
                .iter()
                .map(|c| match classify(table, c) {
                    Some(Src::Text(f)) => 4 + f.iter().map(|f| f.max).max().unwrap_or(0),
                    Some(Src::Enum(s)) => 4 + s.iter().map(|s| s.len()).max().unwrap_or(0),
                    Some(Src::Internal { text_bytes }) => 8 + text_bytes,
                    Some(_) => 8,
                    None => panic!("{table}.{c} is not classified"),
                })
                .sum::<usize>();
            assert!(
                size <= BTREE_MAX_ROW,
                "{table} index {index:?}: rows up to {size} bytes"
            );
        }
    }
}

/// `a + b`, `a - b`, `a * b` of integer columns (or literals) in generated columns, views and
/// functions: Postgres computes them in the columns' type, so the bounds must allow it.
#[test]
fn bigint_arithmetic_in_the_schema_cannot_overflow() {
    let schema = schema();
    let bound = |name: &str| -> Option<(String, i128)> {
        TABLES.iter().find_map(|table| {
            let c = schema.tables[*table].column(name)?;
            int_max(&c.ty)?;
            let src = classify(table, name)?;
            Some((
                format!("{table}.{name}"),
                src.bound().unwrap_or(i128::from(i64::MAX)),
            ))
        })
    };
    let mut exprs: Vec<String> = schema.bodies.clone();
    for table in TABLES {
        exprs.extend(
            schema.tables[table]
                .columns
                .iter()
                .filter_map(|(_, c)| c.generated.clone()),
        );
    }
    let mut checked = 0;
    for e in &exprs {
        let operand = |t: &Token| match t {
            Token::Ident(i) => bound(i),
            Token::Number(n) => Some((n.to_string(), *n)),
            _ => None,
        };
        // A run `a op b op c ...` of integer operands, evaluated left to right with the worst
        // case of each operator ("-" as "+": conservative, the stored figures are >= 0; "*"
        // before "+" only overestimates).
        let mut run: Option<(String, i128, usize)> = None;
        let t = sql::tokens(e);
        for (i, tok) in t.iter().enumerate() {
            let op = match i.checked_sub(1).map(|p| &t[p]) {
                Some(Token::Op(o)) if ["+", "-", "*"].contains(&o.as_str()) => Some(o.as_str()),
                _ => None,
            };
            let Some((name, y)) = operand(tok) else {
                if !matches!(tok, Token::Op(o) if ["+", "-", "*"].contains(&o.as_str())) {
                    run = None;
                }
                continue;
            };
            run = match (run.take(), op) {
                (Some((text, x, n)), Some(op)) => {
                    let worst = if op == "*" { x * y } else { x + y };
                    Some((format!("{text} {op} {name}"), worst, n + 1))
                }
                _ => Some((name, y, 1)),
            };
            let (text, worst, n) = run.as_ref().expect("just set");
            // a column next to literals only (`x * 100`) counts; literals alone do not
            if *n >= 2
                && t[..=i]
                    .iter()
                    .rev()
                    .take(2 * n - 1)
                    .any(|t| matches!(t, Token::Ident(_)))
            {
                assert!(
                    *worst <= i128::from(i64::MAX),
                    "{text} can reach {worst}, beyond bigint: in {e}"
                );
                checked += 1;
            }
        }
    }
    // resource_rollups.cache_hit_ratio adds cache_hits + cache_misses
    assert!(
        checked >= 1,
        "found no integer arithmetic at all: is the parser blind?"
    );
}

#[test]
fn event_times_stay_in_timestamptz_range() {
    // chrono's last instant, +262143-12-31T23:59:59.999999Z, is what the store binds; Postgres
    // goes to 294276 AD. The latest event time plus the longest tier (a day) must stay below.
    const CHRONO_MAX_US: i64 = 8_210_298_412_799_999_999;
    const DAY_US: i64 = 86_400_000_000;
    const { assert!(MAX_EVENT_TIME_US + DAY_US < CHRONO_MAX_US) };
}

#[test]
fn issue_12_nul_in_service_goes_to_the_dead_letter_topic() {
    // Measured: `invalid byte sequence for encoding "UTF8": 0x00` in the flush, exit 1, and the
    // same on every restart.
    let mut e = query();
    e.service = "campaign\0api".into();
    let err = refuses(&Event::Query(e), "service");
    assert_eq!(
        err,
        DecodeError::ContainsNul {
            field: "service".into(),
            at: 8
        }
    );
    assert_eq!(err.kind(), "invalid_field");
}

#[test]
fn issue_12_cache_lookups_beyond_bigint_are_refused() {
    // Measured: `bigint out of range` in the flush (cache_hits + cache_misses), same crash loop.
    let mut e = resource();
    e.caches = Some(
        [(
            "c".to_owned(),
            CacheCounters {
                hits: i64::MAX,
                misses: 1,
            },
        )]
        .into(),
    );
    let err = refuses(&Event::Resource(e.clone()), "caches.hits");
    assert_eq!(err.kind(), "out_of_range");
    // Many caches, each in range, together beyond the limit.
    let c = CacheCounters {
        hits: MAX_COUNT / 2,
        misses: MAX_COUNT / 2,
    };
    e.caches = Some([("a".to_owned(), c), ("b".to_owned(), c)].into());
    refuses(&Event::Resource(e), "all caches");
}

/// Errors compared by their text: a `NotFinite` holding NaN is not equal to itself.
fn same(a: &Result<Event, DecodeError>, b: &Result<Event, DecodeError>) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

proptest! {
    #![proptest_config(cases(256))]

    /// Issue 12: any event the decoder accepts, alone or merged with others up to the
    /// documented counts (and saturated, still writable, up to 2^40), can be written.
    #[test]
    fn accepted_events_are_writable_alone_and_summed(
        e in hostile::event(),
        kafka_us in hostile::kafka_timestamp(),
    ) {
        let (fast, slow) = both_paths();
        let bytes = framed(&e);
        let got = fast.decode(&bytes, kafka_us);
        let other = slow.decode(&bytes, kafka_us);
        prop_assert!(same(&got, &other), "fast {:?}, resolution {:?}", got, other);
        if let Ok(d) = got {
            prop_assert_eq!(&d, &e);
            hostile::text_is_storable(&d)?;
            hostile::rollups_are_writable(&d)?;
        }
    }
}

#[test]
fn the_hostile_strategy_reaches_both_sides_of_every_rule() {
    // Guards the property test against a strategy whose events are all refused (or all valid).
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = hostile::event();
    let (fast, _) = both_paths();
    let (mut ok, mut nul, mut long, mut range) = (0, 0, 0, 0);
    for _ in 0..3000 {
        let e = strategy.new_tree(&mut runner).expect("a value").current();
        match fast.decode(&framed(&e), None) {
            Ok(_) => ok += 1,
            Err(DecodeError::ContainsNul { .. }) => nul += 1,
            Err(DecodeError::StringTooLong { .. }) => long += 1,
            Err(DecodeError::TooLarge { .. } | DecodeError::FigureTooLarge { .. }) => range += 1,
            Err(_) => {}
        }
    }
    assert!(
        ok >= 300 && nul >= 30 && long >= 30 && range >= 30,
        "accepted {ok}, NUL {nul}, too long {long}, out of range {range} of 3000"
    );
}
