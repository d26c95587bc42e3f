//! Cases, card histories and counters on Redis: cases saved with compare-and-set and indexed by
//! customer and subscription; card histories versioned the same way; counters and leases that expire
//! by themselves.

// The backend is one type over one connection: each file implements some of its roles, with the
// keys, scripts and helpers of `mod.rs` in scope.
use super::*;

impl Cases for RedisStore {
    async fn load_case(&self, invoice_id: &str) -> Result<Option<Case>, StoreError> {
        let stored: Option<Vec<u8>> = self
            .query(redis::cmd("GET").arg(case_key(invoice_id)))
            .await?;
        stored.as_deref().map(codec::decode).transpose()
    }

    async fn save_case(&self, case: &Case) -> Result<Saved, StoreError> {
        let id = &case.invoice_id;
        if case.version == 0 {
            // Written before the case itself, so a crash in between leaves an index entry pointing
            // at no case (which readers skip and the redelivered event completes), never a case
            // that support cannot find.
            let owners = std::iter::once(&case.customer_id).chain(&case.subscription_id);
            // Each index bucket is its own slot on a cluster, so these are separate commands (sent
            // together on the multiplexed connection), not one pipeline.
            try_join_all(owners.map(|owner| async move {
                let mut add = redis::cmd("ZADD");
                add.arg(index_key(owner))
                    .arg(0)
                    .arg(format!("{owner}:{id}"));
                self.query::<()>(&add).await
            }))
            .await?;
        }
        let mut saved = case.clone();
        saved.version += 1;
        let wake = saved
            .next_wake()
            .map(|at| at.as_millisecond().to_string())
            .unwrap_or_default();
        // Dunning over and nothing left to do: kept for the retention (on the wall clock, which
        // is what Redis expires keys by), then forgotten.
        let over = saved.state.is_final() && saved.next_wake().is_none();
        let retention = i64::try_from(self.settings.case_retention_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let forget_at = if over {
            Timestamp::now()
                .as_millisecond()
                .saturating_add(retention)
                .to_string()
        } else {
            String::new()
        };
        let forget_entry = format!(
            "{id}\t{}\t{}",
            case.customer_id,
            case.subscription_id.as_deref().unwrap_or("")
        );
        let mut invocation = self.scripts.save_versioned.prepare_invoke();
        let shard = shard_of(id);
        invocation
            .key(case_key(id))
            .key(due_key(shard))
            .key(wake_failures_key(shard))
            .key(parked_key(shard))
            .key(forget_key(shard))
            .arg(case.version)
            .arg(codec::encode(&saved))
            .arg(id)
            .arg(wake)
            .arg("")
            .arg(forget_at)
            .arg(forget_entry);
        self.save_versioned(invocation, saved.version).await
    }

    async fn customers(&self) -> Result<Vec<String>, StoreError> {
        let mut customers = std::collections::BTreeSet::new();
        // A day's one scan reads every bucket, a few hundred at a time on the multiplexed connection.
        let buckets: Vec<u64> = (0..INDEX_BUCKETS).collect();
        for chunk in buckets.chunks(256) {
            let read = try_join_all(chunk.iter().map(|&bucket| {
                let key = bucket_key(bucket);
                async move {
                    self.query::<Vec<String>>(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1))
                        .await
                }
            }))
            .await?;
            customers.extend(read.into_iter().flatten().filter_map(|member| {
                member
                    .split_once(':')
                    .map(|(owner, _)| owner.to_owned())
                    .filter(|owner| owner.starts_with("cus_"))
            }));
        }
        Ok(customers.into_iter().collect())
    }

    async fn forgotten_at(&self, invoice_id: &str) -> Result<Option<Timestamp>, StoreError> {
        let left: i64 = self
            .query(redis::cmd("PTTL").arg(case_key(invoice_id)))
            .await?;
        Ok((left >= 0).then(|| {
            let at = Timestamp::now().as_millisecond().saturating_add(left);
            Timestamp::from_millisecond(at).unwrap_or(Timestamp::MAX)
        }))
    }

    async fn sweep_forgotten(&self) -> Result<u64, StoreError> {
        let now = Timestamp::now().as_millisecond();
        let mut forgotten = 0;
        for shard in 0..TIMER_SHARDS {
            loop {
                let mut invocation = self.scripts.forget.prepare_invoke();
                invocation
                    .key(forget_key(shard))
                    .arg(now)
                    .arg(500)
                    .arg(case_prefix(shard));
                let mut conn = self.conn.get();
                let gone: Vec<String> = self.bounded(invocation.invoke_async(&mut conn)).await?;
                for entry in &gone {
                    let mut parts = entry.split('\t');
                    let invoice = parts.next().unwrap_or_default();
                    // Each index bucket is a slot of its own: one command per owner.
                    for owner in parts.filter(|owner| !owner.is_empty()) {
                        self.query::<()>(
                            redis::cmd("ZREM")
                                .arg(index_key(owner))
                                .arg(format!("{owner}:{invoice}")),
                        )
                        .await?;
                    }
                }
                forgotten += gone.len() as u64;
                if gone.len() < 500 {
                    break;
                }
            }
        }
        Ok(forgotten)
    }

    async fn cases_of_customer(&self, customer_id: &str) -> Result<Vec<Case>, StoreError> {
        self.cases_under(customer_id).await
    }

    async fn cases_of_subscription(&self, subscription_id: &str) -> Result<Vec<Case>, StoreError> {
        self.cases_under(subscription_id).await
    }
}

impl Cards for RedisStore {
    async fn load_card(&self, fingerprint: &str) -> Result<CardHistory, StoreError> {
        let stored: Option<Vec<u8>> = self
            .query(redis::cmd("GET").arg(card_key(fingerprint)))
            .await?;
        stored
            .as_deref()
            .map_or_else(|| Ok(CardHistory::new(fingerprint)), codec::decode_card)
    }

    async fn save_card(&self, card: &CardHistory, keep: Duration) -> Result<Saved, StoreError> {
        let saved = CardHistory {
            version: card.version + 1,
            ..card.clone()
        };
        let mut invocation = self.scripts.save_versioned.prepare_invoke();
        invocation
            .key(card_key(&card.fingerprint))
            .arg(card.version)
            .arg(codec::encode_card(&saved))
            .arg("")
            .arg("")
            .arg(keep.as_millis() as u64);
        self.save_versioned(invocation, saved.version).await
    }
}

impl Counters for RedisStore {
    async fn count_nudge(&self, customer_id: &str, day: &str) -> Result<u64, StoreError> {
        let key = format!("recoup:nudges:{{{customer_id}}}:{day}");
        // Created with its expiry first, so the count never outlives its two days; INCR keeps it.
        self.query::<()>(
            redis::cmd("SET")
                .arg(&key)
                .arg(0)
                .arg("EX")
                .arg(2 * 86_400)
                .arg("NX"),
        )
        .await?;
        self.query(redis::cmd("INCR").arg(&key)).await
    }

    async fn first_time(&self, key: &str, keep: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(format!("recoup:once:{key}"))
                    .arg(1)
                    .arg("PX")
                    .arg(keep.as_millis() as u64)
                    .arg("NX"),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn marked(&self, key: &str) -> Result<bool, StoreError> {
        self.query(redis::cmd("EXISTS").arg(format!("recoup:once:{key}")))
            .await
    }

    async fn defer(&self, list: &str, member: &str, at: Timestamp) -> Result<(), StoreError> {
        self.query(
            redis::cmd("ZADD")
                .arg(format!("recoup:later:{list}"))
                .arg(at.as_millisecond())
                .arg(member),
        )
        .await
    }

    async fn take_due(
        &self,
        list: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let key = format!("recoup:later:{list}");
        let due: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now.as_millisecond())
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await?;
        let mut taken = Vec::with_capacity(due.len());
        for member in due {
            // Whoever removes it takes it: two workers reading the same members split them.
            let removed: u64 = self
                .query(redis::cmd("ZREM").arg(&key).arg(&member))
                .await?;
            if removed == 1 {
                taken.push(member);
            }
        }
        Ok(taken)
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        // At least a millisecond: 0 would give the lease back.
        let ms = (ttl.as_millis() as u64).max(1);
        self.lease_script(name, holder, ms).await
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.lease_script(name, holder, 0).await.map(drop)
    }
}

impl RedisStore {
    async fn lease_script(&self, name: &str, holder: &str, ms: u64) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.lease.prepare_invoke();
        invocation
            .key(format!("recoup:lease:{name}"))
            .arg(holder)
            .arg(ms);
        let mut conn = self.conn.get();
        let held: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        Ok(held == 1)
    }
}
