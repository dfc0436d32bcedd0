//! The three rollup tables behind one interface: how a row is encoded into the column arrays of
//! an `UNNEST` statement, how a stored row decodes back into a [`Rollup`], and the statements
//! built once from each table's column list. The column list is static schema, never data, so
//! building SQL text from it is safe; every value goes through a bind.

mod columns;
mod hist;
mod latency;
mod query;
mod request;
mod resource;

use std::borrow::Cow;
use std::hash::Hash;
use std::sync::Arc;

use perfstream_events::TimestampUs;
use perfstream_window::{Merge, Rollup};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};

pub(crate) use columns::{ColType, Encoder, from_ts, to_ts};

/// The bytes the store writes to a `hist` column for `h` (HdrHistogram V2 compressed): a pure
/// function of the histogram, so equal histograms store equal bytes.
pub fn encode_hist(h: &hdrhistogram::Histogram<u64>) -> Vec<u8> {
    hist::HistEncoder::new().encode(h)
}
pub(crate) use query::QueryTable;
pub(crate) use request::RequestTable;
pub(crate) use resource::ResourceTable;

use crate::StoreError;

/// A row's identity: the primary key.
pub(crate) type RowId<K> = (String, TimestampUs, K);

/// One row to write or read: its resolution label and the rollup, borrowed from the caller's
/// flush (a latency histogram is tens of KiB, so the fast path never copies one) or owned
/// (decoded, merged, rebuilt).
pub(crate) struct Stored<'a, K: Clone, F: Clone> {
    pub resolution: String,
    pub rollup: Cow<'a, Rollup<K, F>>,
}

impl<K: Clone, F: Clone> Stored<'_, K, F> {
    pub fn id(&self) -> RowId<K> {
        (
            self.resolution.clone(),
            self.rollup.window_start_us,
            self.rollup.key.clone(),
        )
    }
}

/// A rollup table.
pub(crate) trait Table: Send + Sync + 'static {
    type Key: Ord + Clone + Eq + Hash + Send + Sync;
    type Figures: Merge + Clone + Send + Sync;
    const NAME: &'static str;

    /// Columns after `resolution, window_start, window_end`: key columns first, then figures.
    fn columns() -> &'static [(String, ColType)];
    /// How many of [`Table::columns`] are key columns.
    const KEY_COLS: usize;
    /// The statements, built once.
    fn sql() -> &'static TableSql;

    /// Appends the key values (the first [`Table::KEY_COLS`] of [`Table::columns`]).
    fn encode_key<'a>(enc: &mut Encoder<'a>, k: &'a Self::Key);
    /// Appends the figure values (the rest of [`Table::columns`]).
    fn encode_figures(enc: &mut Encoder<'_>, f: &Self::Figures);
    /// The key of a returned or selected row.
    fn decode_key(row: &PgRow) -> Result<Self::Key, StoreError>;
    /// The figures of a selected row (all columns).
    fn decode_figures(
        row: &PgRow,
        window_start_us: TimestampUs,
    ) -> Result<Self::Figures, StoreError>;
}

/// Statements of one table, built from its column list.
pub(crate) struct TableSql {
    /// Bulk insert of new rows (`ON CONFLICT DO NOTHING`).
    pub insert: Arc<str>,
    /// 1-based positions of the ids that this transaction did not insert.
    pub not_ours: Arc<str>,
    /// Bulk upsert that overwrites existing rows (tier rebuilds).
    pub overwrite: Arc<str>,
    /// Locks existing rows by id, in the order of the id arrays.
    pub lock: Arc<str>,
    /// Bulk update of existing rows by id.
    pub update: Arc<str>,
    /// Rows of one resolution in a window_start range.
    pub select_range: Arc<str>,
    /// Base-tier rows (any resolution but '1h' and '1d') in a window_start range.
    pub select_base_range: Arc<str>,
    /// Deletes the rows of one resolution and window_start (a tier period being rebuilt).
    pub delete_period: Arc<str>,
    /// One batch of expired rows of one resolution.
    pub delete_expired: Arc<str>,
    /// One batch of expired base-tier rows.
    pub delete_expired_base: Arc<str>,
}

impl TableSql {
    pub fn build(table: &str, cols: &[(String, ColType)], key_cols: usize) -> TableSql {
        let mut all: Vec<(&str, ColType)> = vec![
            ("resolution", ColType::Text),
            ("window_start", ColType::Ts),
            ("window_end", ColType::Ts),
        ];
        all.extend(cols.iter().map(|(n, t)| (n.as_str(), *t)));
        let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
        let id: Vec<&str> = ["resolution", "window_start"]
            .into_iter()
            .chain(cols[..key_cols].iter().map(|(n, _)| n.as_str()))
            .collect();
        let id_types: Vec<ColType> = [ColType::Text, ColType::Ts]
            .into_iter()
            .chain(cols[..key_cols].iter().map(|(_, t)| *t))
            .collect();
        let unnest = |types: &mut dyn Iterator<Item = ColType>| {
            types
                .enumerate()
                .map(|(i, t)| format!("${}::{}[]", i + 1, t.pg_type()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let all_unnest = unnest(&mut all.iter().map(|(_, t)| *t));
        let id_unnest = unnest(&mut id_types.iter().copied());
        let col_list = names.join(", ");
        let id_list = id.join(", ");
        let id_match = |a: &str, b: &str| {
            id.iter()
                .map(|c| format!("{a}.{c} = {b}.{c}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        let non_id: Vec<&str> = names.iter().copied().filter(|n| !id.contains(n)).collect();
        let set_from = |src: &str| {
            non_id
                .iter()
                .map(|c| format!("{c} = {src}.{c}"))
                .chain(std::iter::once("updated_at = now()".to_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Rows go in in array order (the lock order). The statement only counts; when it
        // inserted fewer rows than it was given, `not_ours` finds which rows of the chunk this
        // transaction did not insert (they existed, or vanished since): rare, so the common
        // case transfers and joins nothing.
        let insert = format!(
            "INSERT INTO {table} ({col_list}) SELECT * FROM UNNEST({all_unnest}) ON CONFLICT DO NOTHING"
        );
        let not_ours = format!(
            "SELECT k.ord FROM UNNEST({id_unnest}) WITH ORDINALITY AS k({id_list}, ord) \
             LEFT JOIN {table} r ON {} AND r.xmin = pg_current_xact_id()::xid \
             WHERE r.resolution IS NULL ORDER BY k.ord",
            id_match("r", "k")
        );
        let overwrite = format!(
            "INSERT INTO {table} ({col_list}) SELECT * FROM UNNEST({all_unnest}) \
             ON CONFLICT ({id_list}) DO UPDATE SET {}",
            set_from("EXCLUDED")
        );
        let lock = format!(
            "SELECT r.* FROM UNNEST({id_unnest}) WITH ORDINALITY AS k({id_list}, ord) \
             JOIN {table} r ON {} ORDER BY k.ord FOR UPDATE OF r",
            id_match("r", "k")
        );
        let update = format!(
            "UPDATE {table} AS r SET {} FROM UNNEST({all_unnest}) AS u({col_list}) WHERE {}",
            set_from("u"),
            id_match("r", "u")
        );
        let select_range = format!(
            "SELECT * FROM {table} WHERE resolution = $1 AND window_start >= $2 AND window_start < $3"
        );
        let select_base_range = format!(
            "SELECT * FROM {table} WHERE resolution NOT IN ('1h', '1d') \
             AND window_start >= $1 AND window_start < $2"
        );
        let delete_period =
            format!("DELETE FROM {table} WHERE resolution = $1 AND window_start = $2");
        let delete_expired = format!(
            "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE resolution = $1 \
             AND window_start < $2 AND window_end <= $2 LIMIT $3)"
        );
        let delete_expired_base = format!(
            "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} \
             WHERE resolution NOT IN ('1h', '1d') AND window_start < $1 AND window_end <= $1 LIMIT $2)"
        );
        TableSql {
            delete_period: delete_period.into(),
            delete_expired: delete_expired.into(),
            delete_expired_base: delete_expired_base.into(),
            insert: insert.into(),
            not_ours: not_ours.into(),
            overwrite: overwrite.into(),
            lock: lock.into(),
            update: update.into(),
            select_range: select_range.into(),
            select_base_range: select_base_range.into(),
        }
    }
}

fn encode_rows<'a, T: Table>(rows: &[&'a Stored<'_, T::Key, T::Figures>]) -> Encoder<'a> {
    let mut enc = Encoder::new(
        [ColType::Text, ColType::Ts, ColType::Ts]
            .into_iter()
            .chain(T::columns().iter().map(|(_, t)| *t)),
        rows.len(),
    );
    for s in rows {
        enc.text(&s.resolution);
        enc.ts(s.rollup.window_start_us);
        enc.ts(s.rollup.window_end_us);
        T::encode_key(&mut enc, &s.rollup.key);
        T::encode_figures(&mut enc, &s.rollup.figures);
        enc.end_row();
    }
    enc
}

/// Only the id columns (resolution, window_start, key) of `rows`, bound as $1, $2, ...
fn encode_ids<'a, T: Table>(rows: &[&'a Stored<'_, T::Key, T::Figures>]) -> Encoder<'a> {
    let mut enc = Encoder::new(
        [ColType::Text, ColType::Ts]
            .into_iter()
            .chain(T::columns()[..T::KEY_COLS].iter().map(|(_, t)| *t)),
        rows.len(),
    );
    for s in rows {
        enc.text(&s.resolution);
        enc.ts(s.rollup.window_start_us);
        T::encode_key(&mut enc, &s.rollup.key);
        enc.end_row();
    }
    enc
}

fn decode_id<T: Table>(row: &PgRow) -> Result<RowId<T::Key>, StoreError> {
    let resolution: String = row.try_get("resolution").map_err(StoreError::db(T::NAME))?;
    let start = from_ts(
        row.try_get("window_start")
            .map_err(StoreError::db(T::NAME))?,
    );
    Ok((resolution, start, T::decode_key(row)?))
}

/// Decodes a whole stored row.
pub(crate) fn decode_row<T: Table>(
    row: &PgRow,
) -> Result<Stored<'static, T::Key, T::Figures>, StoreError> {
    let (resolution, window_start_us, key) = decode_id::<T>(row)?;
    let window_end_us = from_ts(row.try_get("window_end").map_err(StoreError::db(T::NAME))?);
    let figures = T::decode_figures(row, window_start_us)?;
    Ok(Stored {
        resolution,
        rollup: Cow::Owned(Rollup {
            window_start_us,
            window_end_us,
            key,
            figures,
        }),
    })
}

/// Rows per bulk statement. Statements are pipelined against encoding: while Postgres
/// inserts one chunk, this task encodes the next, so client and server work overlap.
const CHUNK: usize = 1000;

/// Inserts the rows that do not exist yet; returns the positions (in `rows`) of those that
/// already existed. Rows must be sorted by id: inserts take their locks in array order (chunk
/// after chunk), and a global order is what keeps two writers from deadlocking.
pub(crate) async fn insert_new<T: Table>(
    conn: &mut PgConnection,
    rows: &[&Stored<'_, T::Key, T::Figures>],
) -> Result<Vec<usize>, StoreError> {
    let mut existing = Vec::new();
    let chunks: Vec<&[&Stored<'_, T::Key, T::Figures>]> = rows.chunks(CHUNK).collect();
    let mut next = chunks.first().map(|c| encode_rows::<T>(c));
    for (ci, chunk) in chunks.iter().enumerate() {
        let Some(enc) = next.take() else { break };
        let q = enc.bind_all(sqlx::query(AssertSqlSafe(T::sql().insert.clone())));
        let result = {
            let mut exec = std::pin::pin!(q.execute(&mut *conn));
            // Poll once so the statement is sent, encode the next chunk while the server
            // works, then wait for the result.
            let first =
                std::future::poll_fn(|cx| std::task::Poll::Ready(exec.as_mut().poll(cx))).await;
            next = chunks.get(ci + 1).map(|c| encode_rows::<T>(c));
            match first {
                std::task::Poll::Ready(r) => r,
                std::task::Poll::Pending => exec.await,
            }
        };
        let inserted = result
            .map_err(StoreError::db("inserting rollups"))?
            .rows_affected();
        if inserted == chunk.len() as u64 {
            continue;
        }
        let not_ours = encode_ids::<T>(chunk)
            .bind_all(sqlx::query(AssertSqlSafe(T::sql().not_ours.clone())))
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::db("finding existing rollups"))?;
        for r in not_ours {
            let ord: i64 = r
                .try_get(0)
                .map_err(StoreError::db("finding existing rollups"))?;
            let i = usize::try_from(ord - 1)
                .ok()
                .filter(|i| *i < chunk.len())
                .ok_or(StoreError::InvalidColumn {
                    table: T::NAME,
                    column: "ord",
                    window_start_us: 0,
                })?;
            existing.push(ci * CHUNK + i);
        }
    }
    Ok(existing)
}

/// Inserts or overwrites rows (tier rebuilds).
pub(crate) async fn overwrite<T: Table>(
    conn: &mut PgConnection,
    rows: &[&Stored<'_, T::Key, T::Figures>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    encode_rows::<T>(rows)
        .bind_all(sqlx::query(AssertSqlSafe(T::sql().overwrite.clone())))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::db("overwriting tier rollups"))?;
    Ok(())
}

/// Locks the stored rows with these ids (sorted), `SELECT ... FOR UPDATE` in the given order,
/// and returns them decoded. Ids with no stored row are absent from the result.
pub(crate) async fn lock_existing<T: Table>(
    conn: &mut PgConnection,
    rows: &[&Stored<'_, T::Key, T::Figures>],
) -> Result<Vec<Stored<'static, T::Key, T::Figures>>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let locked = encode_ids::<T>(rows)
        .bind_all(sqlx::query(AssertSqlSafe(T::sql().lock.clone())))
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::db("locking existing rollups"))?;
    locked.iter().map(decode_row::<T>).collect()
}

/// Overwrites the figures of existing rows.
pub(crate) async fn update<T: Table>(
    conn: &mut PgConnection,
    rows: &[&Stored<'_, T::Key, T::Figures>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    encode_rows::<T>(rows)
        .bind_all(sqlx::query(AssertSqlSafe(T::sql().update.clone())))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::db("updating merged rollups"))?;
    Ok(())
}

/// Reads rows in `[from, to)` of one resolution, or of the base tier when `resolution` is None.
pub(crate) async fn select_range<T: Table>(
    conn: &mut PgConnection,
    resolution: Option<&str>,
    from_us: TimestampUs,
    to_us: TimestampUs,
) -> Result<Vec<Stored<'static, T::Key, T::Figures>>, StoreError> {
    let rows = match resolution {
        Some(r) => {
            sqlx::query(AssertSqlSafe(T::sql().select_range.clone()))
                .bind(r)
                .bind(to_ts(from_us))
                .bind(to_ts(to_us))
                .fetch_all(&mut *conn)
                .await
        }
        None => {
            sqlx::query(AssertSqlSafe(T::sql().select_base_range.clone()))
                .bind(to_ts(from_us))
                .bind(to_ts(to_us))
                .fetch_all(&mut *conn)
                .await
        }
    }
    .map_err(StoreError::db("reading rollups"))?;
    rows.iter().map(decode_row::<T>).collect()
}

/// Deletes the rows of one resolution and window_start.
pub(crate) async fn delete_period<T: Table>(
    conn: &mut PgConnection,
    resolution: &str,
    start_us: TimestampUs,
) -> Result<(), StoreError> {
    sqlx::query(AssertSqlSafe(T::sql().delete_period.clone()))
        .bind(resolution)
        .bind(to_ts(start_us))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::db("deleting a tier period"))?;
    Ok(())
}

/// Deletes at most `batch` rows of a resolution (`None`: the base tier) whose window ended at
/// or before `cutoff_us`; returns how many it deleted.
pub(crate) async fn delete_expired<T: Table>(
    pool: &sqlx::PgPool,
    resolution: Option<&str>,
    cutoff_us: TimestampUs,
    batch: i64,
) -> Result<u64, StoreError> {
    let r = match resolution {
        Some(r) => {
            sqlx::query(AssertSqlSafe(T::sql().delete_expired.clone()))
                .bind(r)
                .bind(to_ts(cutoff_us))
                .bind(batch)
                .execute(pool)
                .await
        }
        None => {
            sqlx::query(AssertSqlSafe(T::sql().delete_expired_base.clone()))
                .bind(to_ts(cutoff_us))
                .bind(batch)
                .execute(pool)
                .await
        }
    }
    .map_err(StoreError::db("deleting expired rollups"))?;
    Ok(r.rows_affected())
}
