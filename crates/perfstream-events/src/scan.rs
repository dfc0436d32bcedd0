//! A schema-driven walk over an Avro body that checks it is well-formed and within our limits,
//! without building anything.
//!
//! apache-avro allocates a string's or map's declared length before reading it (up to its global
//! 512 MiB cap) and reads a truncated string as `null`. The resolution path therefore scans a
//! body with our bounds-checked [`Cursor`] first and hands it to apache-avro only once every
//! length is known to fit the bytes that are there. The errors are the same, field for field, as
//! the specialised decoders give for our own schemas.

use std::borrow::Cow;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, NamesRef, UuidSchema};

use crate::cursor::Cursor;
use crate::decode::Limits;
use crate::error::DecodeError;

/// Deepest nesting of records, unions, maps and arrays a writer schema may use.
pub const MAX_DEPTH: usize = 32;

/// Checks one value of `schema` at the cursor and moves past it.
pub(crate) fn scan(
    schema: &Schema,
    names: &NamesRef<'_>,
    c: &mut Cursor,
    lim: &Limits,
    depth: usize,
) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooDeep {
            field: Cow::Borrowed(""),
            max: MAX_DEPTH,
        });
    }
    match schema {
        Schema::Null => {}
        Schema::Boolean => {
            let [b] = c.fixed::<1>("")?;
            if b > 1 {
                return Err(DecodeError::InvalidBoolean {
                    field: Cow::Borrowed(""),
                    byte: b,
                });
            }
        }
        Schema::Int | Schema::Date | Schema::TimeMillis => {
            c.int("")?;
        }
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => {
            c.long("")?;
        }
        Schema::Float => {
            c.fixed::<4>("")?;
        }
        Schema::Double => {
            c.fixed::<8>("")?;
        }
        Schema::String | Schema::Uuid(UuidSchema::String) => {
            c.str("", lim.max_string)?;
        }
        Schema::Bytes | Schema::BigDecimal | Schema::Uuid(UuidSchema::Bytes) => {
            c.bytes("")?;
        }
        Schema::Decimal(d) => match &d.inner {
            InnerDecimalSchema::Bytes => {
                c.bytes("")?;
            }
            InnerDecimalSchema::Fixed(f) => {
                c.take("", f.size as u64)?;
            }
        },
        Schema::Fixed(f) | Schema::Duration(f) | Schema::Uuid(UuidSchema::Fixed(f)) => {
            c.take("", f.size as u64)?;
        }
        Schema::Enum(e) => {
            c.enum_index("", e.symbols.len())?;
        }
        Schema::Union(u) => {
            let variants = u.variants();
            let i = c.union_branch("", variants.len())?;
            scan(&variants[i], names, c, lim, depth + 1)?;
        }
        Schema::Array(a) => {
            // Bounded by the bytes left (`Cursor::block`), not by `max_map_entries`.
            let mut total = 0;
            loop {
                let n = c.block("", total, usize::MAX)?;
                if n == 0 {
                    break;
                }
                total += n;
                for _ in 0..n {
                    scan(&a.items, names, c, lim, depth + 1)?;
                }
            }
        }
        Schema::Map(m) => {
            let mut total = 0;
            loop {
                let n = c.block("", total, lim.max_map)?;
                if n == 0 {
                    break;
                }
                total += n;
                for _ in 0..n {
                    c.str("", lim.max_string)?;
                    scan(&m.types, names, c, lim, depth + 1)?;
                }
            }
        }
        Schema::Record(r) => {
            for field in &r.fields {
                scan(&field.schema, names, c, lim, depth + 1)
                    .map_err(|e| e.in_field(&field.name))?;
            }
        }
        Schema::Ref { name } => match names.get(name) {
            Some(s) => scan(s, names, c, lim, depth + 1)?,
            None => {
                return Err(DecodeError::UnresolvedName {
                    name: name.to_string(),
                });
            }
        },
    }
    Ok(())
}
