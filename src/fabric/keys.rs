use uuid::Uuid;

/// Builds every Redis key and channel name; the only place the prefix is applied.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// HASH: one device's login.
    pub fn session(&self, session_id: Uuid) -> String {
        format!("{}session:{session_id}", self.prefix)
    }

    /// SET: hashes of a session's rotated refresh tokens, to recognise reuse.
    pub fn rotated(&self, session_id: Uuid) -> String {
        format!("{}rotated:{session_id}", self.prefix)
    }

    /// ZSET session id → expiry ms: a user's devices.
    pub fn sessions(&self, user_id: Uuid) -> String {
        format!("{}sessions:{user_id}", self.prefix)
    }

    /// ZSET connection → lease expiry ms: a user's live connections on every node.
    pub fn presence(&self, user_id: Uuid) -> String {
        format!("{}{user_id}", self.presence_prefix())
    }

    /// What `presence` puts before the user id, for scripts that build the keys themselves.
    pub fn presence_prefix(&self) -> String {
        format!("{}presence:", self.prefix)
    }

    /// ZSET user → latest lease expiry ms: finds users whose node died.
    pub fn presence_index(&self) -> String {
        format!("{}presence:index", self.prefix)
    }

    /// ZSET user → expiry ms: who is typing in a conversation.
    pub fn typing(&self, conversation_id: Uuid) -> String {
        format!("{}typing:{conversation_id}", self.prefix)
    }

    /// Pub/sub channel of the cluster's event bus.
    pub fn bus(&self) -> String {
        format!("{}bus", self.prefix)
    }

    /// STRING with TTL: a rate limiter's theoretical arrival time (ms).
    pub fn ratelimit(&self, key: &str) -> String {
        format!("{}ratelimit:{key}", self.prefix)
    }

    /// ZSET connection → lease expiry ms: a user's sockets on every node, both namespaces.
    pub fn sockets(&self, user_id: Uuid) -> String {
        format!("{}sockets:{user_id}", self.prefix)
    }
}
