use uuid::Uuid;

/// Presence is kept in this many shards, each an index and its users' connection keys in
/// one hash slot, so that the scripts which touch both run on one Redis Cluster master
/// while the shards spread over all of them. Every node of a cluster must agree on it.
pub const PRESENCE_SHARDS: u8 = 16;

/// The presence shard of a user: from the id's last byte, random in v4 and v7 ids alike.
pub fn presence_shard(user_id: Uuid) -> u8 {
    user_id.as_bytes()[15] % PRESENCE_SHARDS
}

/// Builds every Redis key and channel name; the only place the prefix is applied. Every
/// key carries a hash tag (`{…}`): the keys one script or atomic pipeline touches share it,
/// so each runs within one Redis Cluster hash slot.
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

    /// HASH with TTL: the cached copy of one device's live session (PostgreSQL holds the
    /// truth). The user is the hash tag, so a user's session keys share one Redis Cluster
    /// slot and each script or atomic pipeline over them stays on one shard.
    pub fn session(&self, user_id: Uuid, session_id: Uuid) -> String {
        format!("{}session:{{{user_id}}}:{session_id}", self.prefix)
    }

    /// STRING with TTL: a revoked (or unknown) session, for as long as an access token of
    /// it can still be valid. A cache refill does nothing while it exists, and requests
    /// carrying the session are refused without asking PostgreSQL.
    pub fn session_revoked(&self, user_id: Uuid, session_id: Uuid) -> String {
        format!("{}revoked:{{{user_id}}}:{session_id}", self.prefix)
    }

    /// HASH: a session as builds before durable sessions kept it (fields `user`, `device`,
    /// `created`, `last_seen`, `refresh`). Read only to carry such sessions over into
    /// PostgreSQL, then deleted.
    pub fn legacy_session(&self, session_id: Uuid) -> String {
        format!("{}session:{session_id}", self.prefix)
    }

    /// SET: a legacy session's rotated refresh token hashes (see `legacy_session`).
    pub fn legacy_rotated(&self, session_id: Uuid) -> String {
        format!("{}rotated:{session_id}", self.prefix)
    }

    /// ZSET session id → expiry ms: a user's legacy sessions (see `legacy_session`).
    pub fn legacy_sessions(&self, user_id: Uuid) -> String {
        format!("{}sessions:{user_id}", self.prefix)
    }

    /// ZSET connection → lease expiry ms: a user's live connections on every node. In its
    /// presence shard's hash slot, with that shard's index.
    pub fn presence(&self, user_id: Uuid) -> String {
        format!("{}{user_id}", self.presence_prefix(presence_shard(user_id)))
    }

    /// What `presence` puts before the user id in one shard, for scripts that build the
    /// keys themselves.
    pub fn presence_prefix(&self, shard: u8) -> String {
        format!("{}presence:{{p{shard}}}:", self.prefix)
    }

    /// ZSET user → latest lease expiry ms of one presence shard: finds users whose node
    /// died.
    pub fn presence_index(&self, shard: u8) -> String {
        format!("{}presence:index:{{p{shard}}}", self.prefix)
    }

    /// ZSET user → expiry ms: who is typing in a conversation.
    pub fn typing(&self, conversation_id: Uuid) -> String {
        format!("{}typing:{{{conversation_id}}}", self.prefix)
    }

    /// Sharded pub/sub channel of one Socket.IO room. The room is the hash tag: in Redis
    /// Cluster each room's channel lives on one shard and rooms spread over all of them.
    pub fn bus_channel(&self, room: &str) -> String {
        format!("{}bus:{{{room}}}", self.prefix)
    }

    /// The room a bus channel carries, if it is one of this prefix's.
    pub fn bus_room<'a>(&self, channel: &'a [u8]) -> Option<&'a str> {
        let rest = channel.strip_prefix(self.prefix.as_bytes())?;
        let room = rest.strip_prefix(b"bus:{")?.strip_suffix(b"}")?;
        std::str::from_utf8(room).ok()
    }

    /// STRING with TTL: a rate limiter's theoretical arrival time (ms).
    pub fn ratelimit(&self, key: &str) -> String {
        format!("{}ratelimit:{{{key}}}", self.prefix)
    }

    /// ZSET connection → lease expiry ms: a user's sockets on every node, both namespaces.
    pub fn sockets(&self, user_id: Uuid) -> String {
        format!("{}sockets:{{{user_id}}}", self.prefix)
    }
}
