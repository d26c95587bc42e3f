//! The status page's sessions on Redis, under the SHA-256 of the cookie's id, expiring by
//! themselves.

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
