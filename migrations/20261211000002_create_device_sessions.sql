-- Device sessions: one row per signed-in device. This table is the truth; Redis (or a
-- single node's memory) only caches the live rows for the per-request check, so losing
-- Redis's data logs no one out.
create table device_sessions (
    session_id     uuid not null,
    user_id        uuid not null references users (user_id) on delete cascade,
    -- The name the client gave at sign-in, else its User-Agent.
    device         text not null,
    -- SHA-256 (hex) of the current refresh token; the token itself is never stored.
    refresh_hash   text not null,
    -- Hashes of the latest rotated-away refresh tokens, newest first. Presenting one of
    -- them again means the token was copied, and ends the session. Bounded: an older one
    -- is merely unknown (refused without ending the session).
    rotated_hashes text[] not null default '{}',
    -- Written at sign-in and at each refresh; the per-request last-seen time lives in the
    -- cache (GET /auth/sessions shows the later of the two).
    last_seen_at   timestamptz not null default now(),
    -- Moved forward by each refresh. A row past it is dead; each sign-in deletes a few
    -- dead rows, which keeps up because a session dies at most once per sign-in.
    expires_at     timestamptz not null,
    created_at     timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    constraint device_sessions_pkey primary key (session_id),
    constraint device_sessions_rotated_hashes_check check (cardinality(rotated_hashes) <= 64)
);
create index device_sessions_user_idx on device_sessions (user_id, created_at);
create index device_sessions_expires_idx on device_sessions (expires_at);
create trigger device_sessions_updated_at before update on device_sessions
    for each row execute function set_updated_at();
