//! The last statement of a flush: the compare-and-set of every partition's progress, and, when
//! it is refused, telling a flush that already committed from one that was fenced.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{PgConnection, Row};

use crate::table::to_ts;
use crate::{FlushCommit, FlushWrite, PartitionProgress, StoreError};

/// Progress of every partition, only where (owner, generation) still match and the stored
/// `flush_seq` is the one before this flush's. Runs last in the transaction: progress rows are
/// last in the lock order.
///
/// When some row is refused, the refused rows are read back (a plain read, no lock): if no row
/// was updated and every refused row is still this claim's (same owner and generation) with a
/// `flush_seq` at or past the sent one, this flush already committed
/// ([`FlushCommit::AlreadyApplied`]); anything else is [`StoreError::Fenced`]. (A retry never
/// mixes: its first attempt moved every partition's number together, or none.)
pub(crate) async fn compare_and_set(
    conn: &mut PgConnection,
    flush: &FlushWrite,
) -> Result<FlushCommit, StoreError> {
    const OP: &str = "updating consumer progress";
    if flush.progress.is_empty() {
        return Ok(FlushCommit::Committed);
    }
    let by_partition: BTreeMap<(&str, i32), &PartitionProgress> = flush
        .progress
        .iter()
        .map(|p| ((p.topic.as_str(), p.partition), p))
        .collect();
    let ps: Vec<&PartitionProgress> = by_partition.values().copied().collect();
    let rows = sqlx::query(
        "UPDATE consumer_offsets AS o SET resume_offset = u.resume_offset, \
             applied_through_offset = u.applied_through_offset, \
             applied_watermark = u.applied_watermark, flush_seq = u.flush_seq, updated_at = now() \
         FROM UNNEST($3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[], $9::timestamptz[]) \
             AS u(topic, partition, generation, flush_seq, resume_offset, applied_through_offset, applied_watermark) \
         WHERE o.group_id = $1 AND o.owner = $2 AND o.topic = u.topic \
           AND o.partition = u.partition AND o.generation = u.generation \
           AND o.flush_seq = u.flush_seq - 1 \
         RETURNING o.topic, o.partition",
    )
    .bind(&flush.group_id)
    .bind(&flush.owner)
    .bind(ps.iter().map(|p| p.topic.as_str()).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.partition).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.generation).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.flush_seq).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.resume_offset).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.applied_through_offset).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| to_ts(p.applied_watermark_us)).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::db(OP))?;
    if rows.len() == ps.len() {
        return Ok(FlushCommit::Committed);
    }
    let mut updated = BTreeSet::new();
    for r in &rows {
        let topic: String = r.try_get(0).map_err(StoreError::db(OP))?;
        let partition: i32 = r.try_get(1).map_err(StoreError::db(OP))?;
        updated.insert((topic, partition));
    }
    let refused: Vec<&PartitionProgress> = ps
        .iter()
        .copied()
        .filter(|p| !updated.contains(&(p.topic.clone(), p.partition)))
        .collect();
    let stored = stored_claims(conn, &flush.group_id, &refused).await?;
    let applied = |p: &PartitionProgress| {
        stored
            .get(&(p.topic.clone(), p.partition))
            .is_some_and(|(owner, generation, seq)| {
                *owner == flush.owner && *generation == p.generation && *seq >= p.flush_seq
            })
    };
    if updated.is_empty() && refused.iter().all(|p| applied(p)) {
        return Ok(FlushCommit::AlreadyApplied);
    }
    let fenced = refused
        .iter()
        .find(|p| !applied(p))
        .or(refused.first())
        .map(|p| (p.topic.clone(), p.partition))
        .unwrap_or_default();
    let (owner, generation, seq) = stored
        .get(&fenced)
        .map(|(o, g, s)| (Some(o.as_str()), Some(*g), Some(*s)))
        .unwrap_or_default();
    tracing::warn!(
        group_id = %flush.group_id,
        owner = %flush.owner,
        topic = %fenced.0,
        partition = fenced.1,
        stored_owner = owner,
        stored_generation = generation,
        stored_flush_seq = seq,
        "Progress compare-and-set refused: another owner or generation holds the partition, or the flush number does not follow; rolling back the flush."
    );
    Err(StoreError::Fenced {
        topic: fenced.0,
        partition: fenced.1,
    })
}

/// (owner, generation, flush_seq) of the progress rows of `ps` that exist, by partition.
async fn stored_claims(
    conn: &mut PgConnection,
    group_id: &str,
    ps: &[&PartitionProgress],
) -> Result<BTreeMap<(String, i32), (String, i64, i64)>, StoreError> {
    const OP: &str = "reading refused consumer progress";
    let rows = sqlx::query(
        "SELECT o.topic, o.partition, o.owner, o.generation, o.flush_seq \
         FROM consumer_offsets AS o \
         JOIN UNNEST($2::text[], $3::int[]) AS u(topic, partition) \
           ON o.topic = u.topic AND o.partition = u.partition \
         WHERE o.group_id = $1",
    )
    .bind(group_id)
    .bind(ps.iter().map(|p| p.topic.as_str()).collect::<Vec<_>>())
    .bind(ps.iter().map(|p| p.partition).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::db(OP))?;
    let mut out = BTreeMap::new();
    for r in &rows {
        out.insert(
            (
                r.try_get(0).map_err(StoreError::db(OP))?,
                r.try_get(1).map_err(StoreError::db(OP))?,
            ),
            (
                r.try_get(2).map_err(StoreError::db(OP))?,
                r.try_get(3).map_err(StoreError::db(OP))?,
                r.try_get(4).map_err(StoreError::db(OP))?,
            ),
        );
    }
    Ok(out)
}
