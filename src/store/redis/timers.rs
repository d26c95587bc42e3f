//! Wake-ups on Redis: sharded sorted sets claimed with a lease, failures counted and wake-ups that
//! keep failing parked; and the test clock's offset.

// The backend is one type over one connection: each file implements some of its roles, with the
// keys, scripts and helpers of `mod.rs` in scope.
use super::*;

impl Timers for RedisStore {
    async fn claim_due(
        &self,
        shard: u16,
        now: Timestamp,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let mut invocation = self.scripts.claim_due.prepare_invoke();
        invocation
            .key(due_key(shard))
            .arg(now.as_millisecond())
            .arg(lease.as_millis() as u64)
            .arg(max)
            .arg(case_prefix(shard));
        let mut conn = self.conn.get();
        let claimed: Vec<(String, Option<Vec<u8>>)> =
            self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(claimed
            .into_iter()
            .map(|(invoice_id, stored)| Claim {
                case: stored
                    .as_deref()
                    .map(codec::decode)
                    .transpose()
                    .map_err(|e| e.to_string()),
                invoice_id,
            })
            .collect())
    }

    async fn renew_claim(&self, invoice_id: &str, until: Timestamp) -> Result<(), StoreError> {
        // XX: only a wake-up still there; GT: only pushed out, never brought forward.
        self.query::<()>(
            redis::cmd("ZADD")
                .arg(due_key(shard_of(invoice_id)))
                .arg("XX")
                .arg("GT")
                .arg(until.as_millisecond())
                .arg(invoice_id),
        )
        .await
    }

    async fn fail_wake(
        &self,
        invoice_id: &str,
        error: &str,
        now: Timestamp,
    ) -> Result<Failure, StoreError> {
        let shard = shard_of(invoice_id);
        let mut invocation = self.scripts.fail_wake.prepare_invoke();
        invocation
            .key(due_key(shard))
            .key(wake_failures_key(shard))
            .key(parked_key(shard))
            .arg(invoice_id)
            .arg(MAX_FAILURES)
            .arg(error)
            .arg(now.to_string());
        let mut conn = self.conn.get();
        let failures: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(match u32::try_from(failures) {
            Ok(failures) => Failure::WillRetry { failures },
            Err(_) => Failure::DeadLettered,
        })
    }

    async fn parked(&self) -> Result<Vec<Parked>, StoreError> {
        let shards = try_join_all((0..TIMER_SHARDS).map(|shard| async move {
            self.query::<Vec<(String, String)>>(redis::cmd("HGETALL").arg(parked_key(shard)))
                .await
        }))
        .await?;
        let mut parked: Vec<Parked> = shards
            .into_iter()
            .flatten()
            .map(|(invoice_id, json)| {
                serde_json::from_str(&json).unwrap_or(Parked {
                    invoice_id,
                    failures: 0,
                    error: format!("unreadable record: {json}"),
                    at: Timestamp::UNIX_EPOCH,
                })
            })
            .collect();
        parked.sort_by_key(|p| std::cmp::Reverse(p.at));
        Ok(parked)
    }

    async fn unpark(&self, invoice_id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let shard = shard_of(invoice_id);
        let mut invocation = self.scripts.unpark.prepare_invoke();
        invocation
            .key(due_key(shard))
            .key(wake_failures_key(shard))
            .key(parked_key(shard))
            .arg(invoice_id)
            .arg(now.as_millisecond());
        let mut conn = self.conn.get();
        let unparked: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(unparked == 1)
    }

    async fn count_due(&self, now: Timestamp) -> Result<u64, StoreError> {
        let now_ms = now.as_millisecond();
        let counts = try_join_all((0..TIMER_SHARDS).map(|shard| async move {
            let mut count = redis::cmd("ZCOUNT");
            count.arg(due_key(shard)).arg("-inf").arg(now_ms);
            self.query::<u64>(&count).await
        }))
        .await?;
        Ok(counts.into_iter().sum())
    }
}

impl TestClock for RedisStore {
    async fn clock_offset(&self) -> Result<i64, StoreError> {
        let offset: Option<i64> = self.query(redis::cmd("GET").arg(CLOCK_OFFSET)).await?;
        Ok(offset.unwrap_or(0))
    }

    async fn advance_clock(&self, seconds: i64) -> Result<i64, StoreError> {
        self.query(redis::cmd("INCRBY").arg(CLOCK_OFFSET).arg(seconds))
            .await
    }
}
