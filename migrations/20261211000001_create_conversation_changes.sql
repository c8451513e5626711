-- Every change to a conversation other than a new message (edits, deletes, receipt
-- cursors, membership), as the event it was announced with: whoever missed the
-- announcement (a node whose bus subscription had a gap, a client that was offline) can be
-- handed exactly the same event later. Rows are written in the transaction of the change.

-- Highest change_seq handed out. It is taken under the conversation row's lock (as last_seq
-- is), so a conversation's changes commit in change_seq order with no gaps: a reader that
-- sees change N has seen every change before it, which a global sequence would not give.
alter table conversations add column last_change_seq bigint not null default 0;

-- Append-only: rows are never updated, so there is no updated_at and no trigger; old rows
-- are pruned by age.
create table conversation_changes (
    conversation_id uuid not null references conversations (conversation_id) on delete cascade,
    change_seq      bigint not null,
    -- The Socket.IO event and its payload as they were published.
    event           text not null,
    payload         jsonb not null,
    -- Whose devices (`user:` rooms) the event was addressed to.
    recipients      uuid[] not null,
    -- Users whose sockets joined or left the conversation's room with this change.
    joined          uuid[] not null default '{}',
    left_room       uuid[] not null default '{}',
    created_at      timestamptz not null default now(),
    constraint conversation_changes_pkey primary key (conversation_id, change_seq)
);
-- The replay after a bus gap reads a window of time; the prune deletes the oldest.
create index conversation_changes_created_idx on conversation_changes (created_at);

-- Presence transitions write last_seen_at; the replay after a bus gap re-announces the
-- users whose status changed within the window, without scanning every user.
create index users_last_seen_idx on users (last_seen_at);
