//! Events about a customer that came before their case, on Redis: one capped list per customer,
//! expiring by itself.

// The backend is one type over one connection: each file implements some of its roles, with the
// keys, scripts and helpers of `mod.rs` in scope.
use super::*;

/// The key of the events kept about a customer.
pub fn early_key(customer_id: &str) -> String {
    format!("recoup:early:{{{customer_id}}}")
}

impl EarlyEvents for RedisStore {
    async fn keep_early_event(&self, customer_id: &str, event: &Event) -> Result<(), StoreError> {
        let key = early_key(customer_id);
        let json = serde_json::to_string(event).expect("an Event always serialises");
        // One transaction: the list never holds more than the cap, nor outlives its expiry.
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("LPUSH")
            .arg(&key)
            .arg(json)
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(0)
            .arg(EARLY_EVENTS_KEPT - 1)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(EARLY_EVENTS_KEEP.as_secs())
            .ignore();
        let mut conn = self.conn.get();
        self.bounded(pipe.query_async::<()>(&mut conn)).await
    }

    async fn early_events(&self, customer_id: &str) -> Result<Vec<Event>, StoreError> {
        let stored: Vec<String> = self
            .query(
                redis::cmd("LRANGE")
                    .arg(early_key(customer_id))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        let events = stored
            .iter()
            .map(|json| {
                serde_json::from_str(json).map_err(|e| {
                    StoreError::Corrupt(format!("an event kept for {customer_id}: {e}"))
                })
            })
            .collect::<Result<Vec<Event>, _>>()?;
        Ok(in_created_order(events))
    }
}
