//! The CDR export of a fleet search: the search's rows without its page,
//! read from the central index through a cursor (a portal of a read-only
//! transaction, [`BATCH`] rows per fetch), so a hub's memory holds one
//! batch and one chunk whatever the export's size; the body's channel is
//! bounded, so a slow client slows the reads instead of queueing rows.

use std::sync::Arc;

use voxtap_engine::index::CallQuery;

use super::query::{CALL_COLS, HubFilter, Where, call_row, order};
use super::{Hub, unavailable};
use crate::export::{ChunkTx, Chunks, Format};

/// Rows per fetch from the cursor.
const BATCH: i32 = 500;

/// The SQL of every call `q` and `h` match, in the search's order.
fn export_sql(q: &CallQuery, w: &Where) -> String {
    format!(
        "SELECT {CALL_COLS} FROM {} JOIN voxtap.sensors s ON s.id = c.sensor{} ORDER BY {}",
        w.from(),
        w.clause(),
        order(q)
    )
}

/// Streams the export to `tx` from a task of its own; a failure ends the
/// body with an error (the client sees a cut download, the log says why).
pub(crate) fn spawn(hub: Arc<Hub>, q: CallQuery, h: HubFilter, fmt: Format, tx: ChunkTx) {
    tokio::spawn(async move {
        if let Err(e) = stream(&hub, &q, &h, fmt, &tx).await {
            tracing::warn!(error = %e, "hub CDR export failed");
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
}

async fn stream(
    hub: &Hub,
    q: &CallQuery,
    h: &HubFilter,
    fmt: Format,
    tx: &ChunkTx,
) -> Result<(), String> {
    let w = Where::new(q, h);
    let sql = export_sql(q, &w);
    let mut c = hub.client().await.map_err(|e| e.message())?;
    let t = c
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| unavailable(e).message())?;
    let portal = t
        .bind(sql.as_str(), &w.refs())
        .await
        .map_err(|e| unavailable(e).message())?;
    let mut chunks = Chunks::new(fmt, true);
    loop {
        let rows = t
            .query_portal(&portal, BATCH)
            .await
            .map_err(|e| unavailable(e).message())?;
        for r in &rows {
            if let Some(chunk) = chunks.push(&call_row(r))
                && tx.send(Ok(chunk)).await.is_err()
            {
                // The client went away: the transaction rolls back.
                return Ok(());
            }
        }
        if rows.len() < BATCH as usize {
            break;
        }
    }
    let _ = tx.send(Ok(chunks.finish())).await;
    t.commit().await.map_err(|e| unavailable(e).message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_is_the_search_without_its_page() {
        let q = CallQuery {
            state: Some("answered".into()),
            descending: true,
            limit: 50,
            offset: 100,
            ..Default::default()
        };
        let h = HubFilter {
            sensor: Some("s1".into()),
            status_code: None,
        };
        let w = Where::new(&q, &h);
        let sql = export_sql(&q, &w);
        assert!(
            sql.contains("WHERE c.state = $1 AND c.sensor = (SELECT id"),
            "{sql}"
        );
        assert!(
            sql.ends_with("ORDER BY c.start_at DESC, c.id DESC"),
            "{sql}"
        );
        assert!(!sql.contains("LIMIT") && !sql.contains("OFFSET"), "{sql}");
    }
}
