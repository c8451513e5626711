-- The whole product's schema. Constraint names are explicit because Rust matches on them.

create extension if not exists pg_trgm;

create or replace function set_updated_at() returns trigger language plpgsql as $$
begin
    new.updated_at = now();
    return new;
end;
$$;

create table users (
    user_id       uuid primary key default gen_random_uuid(),
    username      text not null,
    email         text not null,
    password_hash text not null,
    status        text not null default 'offline'
                  constraint users_status_check check (status in ('online', 'offline')),
    last_seen_at  timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create unique index users_username_key on users (lower(username));
create unique index users_email_key on users (lower(email));
-- Substring search on usernames (GET /users?search=, /users/search, /friendships/search).
create index users_username_trgm_idx on users using gin (lower(username) gin_trgm_ops);
create trigger users_updated_at before update on users
    for each row execute function set_updated_at();

-- One row per unordered pair; whoever asked first is the requester.
create table friendships (
    friendship_id uuid primary key default gen_random_uuid(),
    requester_id  uuid not null references users (user_id) on delete cascade,
    addressee_id  uuid not null references users (user_id) on delete cascade,
    status        text not null default 'pending'
                  constraint friendships_status_check check (status in ('pending', 'accepted')),
    accepted_at   timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint friendships_not_self_check check (requester_id <> addressee_id)
);
create unique index friendships_pair_key
    on friendships (least(requester_id, addressee_id), greatest(requester_id, addressee_id));
create index friendships_requester_idx on friendships (requester_id, status);
create index friendships_addressee_idx on friendships (addressee_id, status);
create trigger friendships_updated_at before update on friendships
    for each row execute function set_updated_at();

-- Blocks are directed: the blocker stops hearing from the blocked user.
create table user_blocks (
    blocker_id uuid not null references users (user_id) on delete cascade,
    blocked_id uuid not null references users (user_id) on delete cascade,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint user_blocks_pkey primary key (blocker_id, blocked_id),
    constraint user_blocks_not_self_check check (blocker_id <> blocked_id)
);
create index user_blocks_blocked_idx on user_blocks (blocked_id);
create trigger user_blocks_updated_at before update on user_blocks
    for each row execute function set_updated_at();

create table conversations (
    conversation_id uuid primary key default gen_random_uuid(),
    name            text,
    is_group        boolean not null default false,
    -- Highest seq handed out; the row lock on this counter orders concurrent sends.
    last_seq        bigint not null default 0,
    -- "<lower uuid>:<higher uuid>" for direct chats, so a pair has at most one.
    direct_key      text,
    created_by      uuid references users (user_id) on delete set null,
    last_message_at timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint conversations_direct_key_key unique (direct_key),
    constraint conversations_group_name_check check (not is_group or name is not null)
);
create trigger conversations_updated_at before update on conversations
    for each row execute function set_updated_at();

create table conversation_participants (
    conversation_id    uuid not null references conversations (conversation_id) on delete cascade,
    user_id            uuid not null references users (user_id) on delete cascade,
    role               text not null default 'member'
                       constraint conversation_participants_role_check check (role in ('owner', 'admin', 'member')),
    joined_at          timestamptz not null default now(),
    -- Cursors only move forward; read implies delivered.
    last_delivered_seq bigint not null default 0,
    last_read_seq      bigint not null default 0,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    constraint conversation_participants_pkey primary key (conversation_id, user_id)
);
create index conversation_participants_user_idx on conversation_participants (user_id);
create trigger conversation_participants_updated_at before update on conversation_participants
    for each row execute function set_updated_at();

create table messages (
    message_id      uuid primary key default gen_random_uuid(),
    conversation_id uuid not null references conversations (conversation_id) on delete cascade,
    sender_id       uuid not null references users (user_id) on delete cascade,
    seq             bigint not null,
    content         text not null,
    client_msg_id   uuid,
    is_edited       boolean not null default false,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    deleted_at      timestamptz,
    constraint messages_conversation_seq_key unique (conversation_id, seq),
    constraint messages_sender_client_msg_key unique (sender_id, client_msg_id)
);
create trigger messages_updated_at before update on messages
    for each row execute function set_updated_at();

create table notifications (
    notification_id uuid primary key default gen_random_uuid(),
    user_id         uuid not null references users (user_id) on delete cascade,
    type            text not null
                    constraint notifications_type_check check (type in ('message', 'friend_request', 'group_invite', 'system')),
    title           text not null,
    content         text not null,
    metadata        jsonb not null default '{}'::jsonb,
    -- Set for message notifications, which collapse per (user, conversation).
    conversation_id uuid references conversations (conversation_id) on delete cascade,
    count           integer not null default 1,
    is_read         boolean not null default false,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    deleted_at      timestamptz
);
create unique index notifications_unread_message_key
    on notifications (user_id, conversation_id)
    where type = 'message' and not is_read and deleted_at is null;
create index notifications_user_created_idx
    on notifications (user_id, created_at desc) where deleted_at is null;
create index notifications_user_unread_idx
    on notifications (user_id, created_at desc) where not is_read and deleted_at is null;
create trigger notifications_updated_at before update on notifications
    for each row execute function set_updated_at();
