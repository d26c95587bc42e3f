//! Where verified events are kept until a worker has turned them into cases.
//!
//! The store owns the Redis key layout and the Lua scripts in `store/scripts/`; it knows nothing of
//! policy. Its one promise to the receiver: [`Ingest::Stored`] means the event is in the inbox
//! exactly once, [`Ingest::Duplicate`] means it was already there, and any error means nothing was
//! acknowledged, so Stripe must deliver again.

pub mod redis;

pub use self::redis::RedisStore;

/// What happened to an event handed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingest {
    /// Newly appended to the inbox under this stream entry id.
    Stored { entry_id: String },
    /// The event id was seen before; nothing was written.
    Duplicate,
}

/// The store could not do what was asked, within its time bound.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach Redis at {url}: {reason} (check REDIS_URL and that Redis is running)")]
    Unreachable { url: String, reason: String },
    #[error("Redis did not answer within {0} ms")]
    Timeout(u64),
    #[error("Redis error: {0}")]
    Redis(String),
}
