//! The inbox on Redis: dedupe and append in one script, the consumer group, claims, failures and
//! dead letters, and how the newest events arrived.

// The backend is one type over one connection: each file implements some of its roles, with the
// keys, scripts and helpers of `mod.rs` in scope.
use super::*;

impl Health for RedisStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }
}

impl Inbox for RedisStore {
    async fn ingest_via(&self, event: &Event, via: Arrival) -> Result<Ingest, StoreError> {
        let payload = serde_json::to_string(event).expect("an Event always serialises");
        let seen = Seen::of(&event.id, Timestamp::now(), self.settings.dedupe_ttl_secs);
        let mut invocation = self.scripts.ingest.prepare_invoke();
        invocation.key(INBOX_STREAM).key(ARRIVALS);
        for key in seen.keys() {
            invocation.key(key);
        }
        invocation
            .arg(seen.fingerprint)
            .arg(seen.expires_at)
            .arg(&event.id)
            .arg(event.kind.as_str())
            .arg(payload)
            .arg(if via.remembered() { via.as_str() } else { "" })
            .arg(event.created)
            .arg(INBOX_FORMAT);
        let mut conn = self.conn.get();
        let entry: Option<String> = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(match entry {
            Some(entry_id) => Ingest::Stored { entry_id },
            None => Ingest::Duplicate,
        })
    }

    async fn arrivals(&self) -> Result<Arrivals, StoreError> {
        let fields = [
            Arrival::Webhook.as_str(),
            Arrival::Backfill.as_str(),
            BACKFILLED,
        ];
        let times: Vec<Option<i64>> = self
            .query(redis::cmd("HMGET").arg(ARRIVALS).arg(&fields[..]))
            .await?;
        let at = |field: usize| {
            times
                .get(field)
                .copied()
                .flatten()
                .and_then(|s| Timestamp::from_second(s).ok())
        };
        Ok(Arrivals {
            webhook: at(0),
            backfill: at(1),
            backfilled: at(2),
        })
    }

    async fn mark_backfilled(&self, through: Timestamp) -> Result<(), StoreError> {
        let mut invocation = self.scripts.newest.prepare_invoke();
        invocation
            .key(ARRIVALS)
            .arg(BACKFILLED)
            .arg(through.as_second());
        let mut conn = self.conn.get();
        self.bounded(invocation.invoke_async::<()>(&mut conn)).await
    }

    async fn read_inbox(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let wait = wait.min(MAX_BLOCK);
        let reader = self
            .reader
            .get_or_try_init(|| Link::open(&self.settings, self.timeout, None))
            .await?;
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(INBOX_GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max);
        // To Redis `BLOCK 0` means "forever"; a zero wait means "don't wait".
        if !wait.is_zero() {
            read.arg("BLOCK").arg(wait.as_millis() as u64);
        }
        read.arg("STREAMS").arg(INBOX_STREAM).arg(">");
        let limit = wait + self.timeout;
        let reply = match self
            .bounded_for(reader, limit, read.query_async(&mut reader.get()))
            .await
        {
            Err(StoreError::Redis(e)) if e.contains("NOGROUP") => {
                self.ensure_group().await?;
                self.bounded_for(reader, limit, read.query_async(&mut reader.get()))
                    .await?
            }
            other => other?,
        };
        let reply: Option<StreamReadReply> = reply;
        let ids = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        self.entries(ids, &Default::default(), u32::MAX).await
    }

    async fn reclaim_inbox(
        &self,
        consumer: &str,
        lease: Duration,
        max: usize,
        give_up: u32,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let mut cursor = self.reclaim_cursor.lock().await;
        let claim = redis::cmd("XAUTOCLAIM")
            .arg(INBOX_STREAM)
            .arg(INBOX_GROUP)
            .arg(consumer)
            .arg(lease.as_millis() as u64)
            .arg(cursor.as_str())
            .arg("COUNT")
            .arg(max)
            .clone();
        let reply: StreamAutoClaimReply = match self.query(&claim).await {
            Err(StoreError::Redis(e)) if e.contains("NOGROUP") => {
                self.ensure_group().await?;
                return Ok(Vec::new());
            }
            other => other?,
        };
        *cursor = reply.next_stream_id;
        drop(cursor);
        for gone in &reply.deleted_ids {
            self.ack(gone).await?;
        }
        let ids: Vec<&str> = reply.claimed.iter().map(|raw| raw.id.as_str()).collect();
        let deliveries = self.deliveries(&ids).await?;
        self.entries(reply.claimed, &deliveries, give_up).await
    }

    async fn ack(&self, entry_id: &str) -> Result<(), StoreError> {
        let mut invocation = self.scripts.ack.prepare_invoke();
        invocation
            .key(INBOX_STREAM)
            .key(FAILURES)
            .arg(INBOX_GROUP)
            .arg(entry_id);
        let mut conn = self.conn.get();
        self.bounded(invocation.invoke_async::<()>(&mut conn)).await
    }

    async fn fail(
        &self,
        entry: &InboxEntry,
        error: &str,
        now: Timestamp,
    ) -> Result<Failure, StoreError> {
        let event = serde_json::to_string(&entry.event).expect("an Event always serialises");
        let fields = [entry.event.id.as_str(), entry.event.kind.as_str(), &event];
        let failures = self
            .count_failure(
                &entry.entry_id,
                MAX_FAILURES,
                error,
                now,
                fields,
                entry.deliveries,
                INBOX_FORMAT,
            )
            .await?;
        Ok(match u32::try_from(failures) {
            Ok(failures) => Failure::WillRetry { failures },
            Err(_) => Failure::DeadLettered,
        })
    }

    async fn give_up(
        &self,
        entry: &InboxEntry,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let event = serde_json::to_string(&entry.event).expect("an Event always serialises");
        let fields = [entry.event.id.as_str(), entry.event.kind.as_str(), &event];
        self.count_failure(
            &entry.entry_id,
            0,
            error,
            now,
            fields,
            entry.deliveries,
            INBOX_FORMAT,
        )
        .await
        .map(drop)
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.dead_range("+", max).await
    }

    async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let is_stream_id = id.split_once('-').is_some_and(|(ms, seq)| {
            !ms.is_empty()
                && ms.bytes().all(|b| b.is_ascii_digit())
                && seq.bytes().all(|b| b.is_ascii_digit())
        });
        if is_stream_id {
            let found = self.dead_range(id, 1).await?;
            return Ok(found.into_iter().find(|d| d.id == id));
        }
        // By event id: the stream is read newest first, a page at a time.
        let mut end = "+".to_owned();
        loop {
            let page = self.dead_range(&end, 1000).await?;
            if let Some(found) = page.iter().find(|d| d.event_id == id) {
                return Ok(Some(found.clone()));
            }
            match page.last() {
                Some(last) if page.len() == 1000 => end = format!("({}", last.id),
                _ => return Ok(None),
            }
        }
    }

    async fn replay(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut invocation = self.scripts.replay.prepare_invoke();
        invocation.key(INBOX_STREAM).key(DEAD_LETTERS).arg(id);
        let mut conn = self.conn.get();
        self.bounded(invocation.invoke_async(&mut conn)).await
    }

    async fn renew_entry(&self, consumer: &str, entry_id: &str) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.renew.prepare_invoke();
        invocation
            .key(INBOX_STREAM)
            .arg(INBOX_GROUP)
            .arg(consumer)
            .arg(entry_id);
        let mut conn = self.conn.get();
        let renewed: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(renewed == 1)
    }

    async fn retire_consumer(&self, consumer: &str) -> Result<(), StoreError> {
        // XGROUP DELCONSUMER drops the consumer's pending entries from the group, which would lose
        // them: retire only a consumer that has none.
        let pending: Vec<Value> = self
            .query(
                redis::cmd("XPENDING")
                    .arg(INBOX_STREAM)
                    .arg(INBOX_GROUP)
                    .arg("-")
                    .arg("+")
                    .arg(1)
                    .arg(consumer),
            )
            .await?;
        if pending.is_empty() {
            self.query::<()>(
                redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(INBOX_STREAM)
                    .arg(INBOX_GROUP)
                    .arg(consumer),
            )
            .await?;
        }
        Ok(())
    }
}
