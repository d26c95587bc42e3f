//! The status page's sessions on Redis, under the SHA-256 of the cookie's id, and the feedback
//! links answered, under their MACs: both expiring by themselves.

// The backend is one type over one connection: each file implements some of its roles, with the
// keys, scripts and helpers of `mod.rs` in scope.
use super::*;

/// The key of a status page session, named by the key its caller chose.
pub fn session_key(key: &str) -> String {
    format!("recoup:session:{key}")
}

impl Sessions for RedisStore {
    async fn open_session(
        &self,
        key: &str,
        session: &Session,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(session).expect("a session always serialises");
        self.query::<()>(
            redis::cmd("SET")
                .arg(session_key(key))
                .arg(json)
                .arg("PX")
                .arg(keep.as_millis().max(1) as u64),
        )
        .await
    }

    async fn session(&self, key: &str) -> Result<Option<Session>, StoreError> {
        let stored: Option<String> = self.query(redis::cmd("GET").arg(session_key(key))).await?;
        stored
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|e| StoreError::Corrupt(format!("a session that is not JSON: {e}")))
            })
            .transpose()
    }

    async fn close_session(&self, key: &str) -> Result<(), StoreError> {
        self.query::<()>(redis::cmd("DEL").arg(session_key(key)))
            .await
    }
}

/// The key marking a feedback link answered, by its MAC.
pub fn answered_key(link: &[u8; 16]) -> String {
    format!("recoup:answered:{}", hex::encode(link))
}

impl Answers for RedisStore {
    async fn mark_answered(&self, link: &[u8; 16], keep: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(answered_key(link))
                    .arg(1)
                    .arg("PX")
                    .arg(keep.as_millis().max(1) as u64)
                    .arg("NX"),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn answered(&self, link: &[u8; 16]) -> Result<bool, StoreError> {
        self.query(redis::cmd("EXISTS").arg(answered_key(link)))
            .await
    }

    async fn unmark_answered(&self, link: &[u8; 16]) -> Result<(), StoreError> {
        self.query::<()>(redis::cmd("DEL").arg(answered_key(link)))
            .await
    }
}
