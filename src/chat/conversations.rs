use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::{
    changes, events,
    messages::{self, DEFAULT_MESSAGE_PAGE, MessageRange, MessageView},
    publish, publish_rooms,
};
use crate::{
    domain::ConversationName,
    error::{ApiError, ApiResult, FieldError, ResultExt},
    state::AppState,
};

/// Most users one request may name, so one call cannot build an unbounded statement.
pub const MAX_PARTICIPANTS_PER_REQUEST: usize = 500;

/// One member of a conversation as every other member sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ParticipantView {
    pub user_id: Uuid,
    pub username: String,
    /// Presence: `online` or `offline`.
    pub status: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    pub joined_at: DateTime<Utc>,
    /// Highest seq this member's devices have received.
    pub last_delivered_seq: i64,
    /// Highest seq this member has read.
    pub last_read_seq: i64,
}

/// A conversation as every participant sees it (nothing in it depends on who asks).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ConversationView {
    pub conversation_id: Uuid,
    /// Groups only; direct chats are named after the other participant by clients.
    pub name: Option<String>,
    pub is_group: bool,
    pub created_by: Option<Uuid>,
    /// Seq of the newest message; clients compare it with what they hold to detect gaps.
    pub last_seq: i64,
    pub last_message_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[sqlx(json)]
    pub participants: Vec<ParticipantView>,
    /// The newest message that is not deleted.
    #[sqlx(json(nullable))]
    pub last_message: Option<MessageView>,
}

impl ConversationView {
    pub fn participant_ids(&self) -> Vec<Uuid> {
        self.participants.iter().map(|p| p.user_id).collect()
    }
}

/// A conversation in the caller's list.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ConversationSummary {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub conversation: ConversationView,
    /// Messages from others after the caller's read cursor, deleted ones left out.
    pub unread_count: i64,
}

/// A conversation with its newest page of messages.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationDetails {
    #[serde(flatten)]
    pub summary: ConversationSummary,
    /// The newest messages, ascending by seq; older ones through `before_seq`.
    pub messages: Vec<MessageView>,
}

/// Payload of `participantsAdded`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantsAdded {
    pub conversation_id: Uuid,
    /// Only the users who were not members before.
    pub user_ids: Vec<Uuid>,
    pub conversation: ConversationView,
}

/// Payload of `participantRemoved`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantRemoved {
    pub conversation_id: Uuid,
    pub user_id: Uuid,
}

/// A valid request to start a conversation, relative to its creator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewConversation {
    /// The one conversation between the creator and `with`.
    Direct { with: Uuid },
    /// A named group; `members` are distinct and never include the creator, who becomes owner.
    Group {
        name: ConversationName,
        members: Vec<Uuid>,
    },
}

impl NewConversation {
    /// Applies the rules of `POST /conversations`: the creator always takes part, repeated
    /// ids collapse, a direct chat is exactly the creator and one other user, a group needs
    /// a name. A name given for a direct chat is ignored: direct chats are unnamed.
    pub fn parse(
        creator: Uuid,
        name: Option<&str>,
        is_group: bool,
        participant_ids: &[Uuid],
    ) -> ApiResult<Self> {
        let others: Vec<Uuid> = distinct(participant_ids)
            .into_iter()
            .filter(|id| *id != creator)
            .collect();
        if !is_group {
            return match others.as_slice() {
                [with] => Ok(Self::Direct { with: *with }),
                _ => Err(ApiError::invalid(
                    "participant_ids",
                    "must name exactly one other user for a direct conversation",
                )),
            };
        }
        let mut errs = Vec::new();
        let name = match name.map(ConversationName::parse) {
            Some(Ok(n)) => Some(n),
            Some(Err(ApiError::Invalid(mut e))) => {
                errs.append(&mut e);
                None
            }
            Some(Err(other)) => return Err(other),
            None => {
                errs.push(FieldError::new(
                    "name",
                    "is required for group conversations",
                ));
                None
            }
        };
        if others.len() > MAX_PARTICIPANTS_PER_REQUEST {
            errs.push(FieldError::new(
                "participant_ids",
                format!("must name at most {MAX_PARTICIPANTS_PER_REQUEST} users"),
            ));
        }
        match name {
            Some(name) if errs.is_empty() => Ok(Self::Group {
                name,
                members: others,
            }),
            _ => Err(ApiError::Invalid(errs)),
        }
    }
}

/// Ids in first-seen order without repeats.
fn distinct(ids: &[Uuid]) -> Vec<Uuid> {
    let mut seen = BTreeSet::new();
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// The key that makes a pair of users have at most one direct chat, whoever starts it.
fn direct_key(a: Uuid, b: Uuid) -> String {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    format!("{lo}:{hi}")
}

/// Participants of the conversation aliased `c`, as a JSON array.
macro_rules! participants_json {
    () => {
        participants_json!("u.status")
    };
    ($status:literal) => {
        concat!(
            "(select coalesce(json_agg(json_build_object('user_id', u.user_id, 'username', u.username, \
               'status', ",
            $status,
            ", 'role', pp.role, 'joined_at', pp.joined_at, \
               'last_delivered_seq', pp.last_delivered_seq, 'last_read_seq', pp.last_read_seq) \
               order by pp.joined_at, pp.user_id), '[]'::json) \
             from conversation_participants pp join users u on u.user_id = pp.user_id \
             where pp.conversation_id = c.conversation_id) as participants"
        )
    };
}

/// The newest non-deleted message of the conversation aliased `c`, as lateral `lm`: one
/// backward step on `messages_conversation_seq_key`.
macro_rules! last_message_join {
    () => {
        concat!(
            " left join lateral (select ",
            message_columns!(),
            ", ",
            message_status!(),
            " as status from messages m \
               where m.conversation_id = c.conversation_id and m.deleted_at is null \
               order by m.seq desc limit 1) lm on true "
        )
    };
}

/// The caller's conversations: the page is chosen first (from the caller's participant
/// rows), and only its rows get participants, last message and unread count, all in one
/// statement.
macro_rules! summary_sql {
    ($filter:literal) => {
        concat!(
            "with page as (select c.*, me.user_id as viewer_id, me.last_read_seq as viewer_read \
               from conversation_participants me join conversations c on c.conversation_id = me.conversation_id \
               where me.user_id = $1 ",
            $filter,
            ") select c.conversation_id, c.name, c.is_group, c.created_by, c.last_seq, \
               c.last_message_at, c.created_at, c.updated_at, ",
            // What the caller reads is theirs alone: members who blocked them look offline.
            participants_json!(
                "case when exists (select 1 from user_blocks b \
                   where b.blocker_id = u.user_id and b.blocked_id = c.viewer_id) \
                 then 'offline' else u.status end"
            ),
            ", case when lm.message_id is null then null else to_json(lm) end as last_message, \
               (select count(*) from messages m where m.conversation_id = c.conversation_id \
                  and m.seq > c.viewer_read and m.sender_id <> c.viewer_id and m.deleted_at is null) \
               as unread_count \
             from page c",
            last_message_join!(),
            "order by coalesce(c.last_message_at, c.created_at) desc, c.conversation_id desc"
        )
    };
}

/// The caller's conversations, most recently active first.
pub async fn list_conversations(
    db: &PgPool,
    viewer: Uuid,
    limit: i64,
    offset: i64,
) -> ApiResult<Vec<ConversationSummary>> {
    Ok(sqlx::query_as::<_, ConversationSummary>(summary_sql!(
        "order by coalesce(c.last_message_at, c.created_at) desc, c.conversation_id desc limit $2 offset $3"
    ))
    .bind(viewer)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await?)
}

/// One conversation as it appears in the caller's list; `None` unless they take part.
pub async fn conversation_summary<'e>(
    db: impl PgExecutor<'e>,
    viewer: Uuid,
    id: Uuid,
) -> ApiResult<Option<ConversationSummary>> {
    Ok(
        sqlx::query_as::<_, ConversationSummary>(summary_sql!("and me.conversation_id = $2"))
            .bind(viewer)
            .bind(id)
            .fetch_optional(db)
            .await?,
    )
}

/// A conversation with its newest messages, for participants only (404 for anyone else).
pub async fn conversation_details(
    db: &PgPool,
    viewer: Uuid,
    id: Uuid,
) -> ApiResult<ConversationDetails> {
    let summary = conversation_summary(db, viewer, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let messages = messages::page(db, id, MessageRange::latest(DEFAULT_MESSAGE_PAGE)).await?;
    Ok(ConversationDetails { summary, messages })
}

/// The conversation as everyone sees it, whoever asks: callers check access first.
pub async fn conversation_view<'e>(
    db: impl PgExecutor<'e>,
    id: Uuid,
) -> ApiResult<Option<ConversationView>> {
    Ok(sqlx::query_as::<_, ConversationView>(concat!(
        "select c.conversation_id, c.name, c.is_group, c.created_by, c.last_seq, \
           c.last_message_at, c.created_at, c.updated_at, ",
        participants_json!(),
        ", case when lm.message_id is null then null else to_json(lm) end as last_message \
         from conversations c",
        last_message_join!(),
        "where c.conversation_id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await?)
}

/// The ids among `ids` that name no user, as a 400 naming `field`.
async fn require_users<'e>(
    db: impl PgExecutor<'e>,
    ids: &[Uuid],
    field: &'static str,
) -> ApiResult<()> {
    let unknown = sqlx::query_scalar::<_, Vec<Uuid>>(
        "select coalesce(array_agg(t.id order by t.id), '{}') from unnest($1::uuid[]) as t(id) \
         where not exists (select 1 from users u where u.user_id = t.id)",
    )
    .bind(ids)
    .fetch_one(db)
    .await?;
    if unknown.is_empty() {
        return Ok(());
    }
    let list = id_list(&unknown);
    Err(ApiError::invalid(
        field,
        format!("names unknown users: {list}"),
    ))
}

/// Ids as a comma-separated list, for error messages.
fn id_list(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses (403) to put users into a group with `actor` when they have blocked `actor`:
/// a block means the blocker is not pulled back into contact, in a group or elsewhere.
/// The blocker may still add the user they blocked; that is their own choice. Users
/// already in `conversation` are left alone (adding them again changes nothing).
async fn refuse_blockers<'e>(
    db: impl PgExecutor<'e>,
    actor: Uuid,
    ids: &[Uuid],
    conversation: Option<Uuid>,
) -> ApiResult<()> {
    let blockers = sqlx::query_scalar::<_, Vec<Uuid>>(
        "select coalesce(array_agg(b.blocker_id order by b.blocker_id), '{}') from user_blocks b \
         where b.blocked_id = $1 and b.blocker_id = any($2::uuid[]) \
           and not exists (select 1 from conversation_participants p \
                           where p.conversation_id = $3 and p.user_id = b.blocker_id)",
    )
    .bind(actor)
    .bind(ids)
    .bind(conversation)
    .fetch_one(db)
    .await?;
    if blockers.is_empty() {
        return Ok(());
    }
    let list = id_list(&blockers);
    Err(ApiError::Forbidden(
        format!("these users have blocked you and cannot be added: {list}").into(),
    ))
}

/// Starts a conversation and announces it as `conversationCreated` to every participant.
/// Returns `false` with the existing conversation when a direct chat between the two users
/// already exists (also when two requests race: the unique `direct_key` picks one winner).
#[tracing::instrument(skip(state))]
pub async fn create_conversation(
    state: &AppState,
    creator: Uuid,
    new: NewConversation,
) -> ApiResult<(ConversationSummary, bool)> {
    match &new {
        NewConversation::Direct { with } => {
            require_users(&state.db, &[*with], "participant_ids").await?;
            // Also when the chat already exists: a block freezes it for both sides.
            if crate::social::is_blocked_between(&state.db, creator, *with).await? {
                return Err(ApiError::Forbidden(
                    "you cannot chat with this user: one of you has blocked the other".into(),
                ));
            }
        }
        NewConversation::Group { members, .. } => {
            require_users(&state.db, members, "participant_ids").await?;
            refuse_blockers(&state.db, creator, members, None).await?;
        }
    }
    // The conversation, its summary and its change-log row commit together. The checks
    // above run before it begins, so that no request holds its transaction's connection
    // while it waits for another from the pool.
    let mut tx = state.db.begin().await?;
    let (others, inserted) = match &new {
        NewConversation::Direct { with } => {
            let id = sqlx::query_scalar::<_, Uuid>(
                "with c as (insert into conversations (is_group, direct_key, created_by) values (false, $1, $2) \
                   on conflict on constraint conversations_direct_key_key do nothing returning conversation_id), \
                 p as (insert into conversation_participants (conversation_id, user_id) \
                   select c.conversation_id, u from c, unnest(array[$2, $3]::uuid[]) u) \
                 select conversation_id from c",
            )
            .bind(direct_key(creator, *with))
            .bind(creator)
            .bind(*with)
            .fetch_optional(&mut *tx)
            .await
            .on_constraint("conversation_participants_user_id_fkey", |_| {
                ApiError::invalid("participant_ids", "names an unknown user")
            })?;
            (vec![*with], id)
        }
        NewConversation::Group { name, members } => {
            let id = sqlx::query_scalar::<_, Uuid>(
                "with c as (insert into conversations (name, is_group, created_by) values ($1, true, $2) \
                   returning conversation_id), \
                 p as (insert into conversation_participants (conversation_id, user_id, role) \
                   select c.conversation_id, u, case when u = $2 then 'owner' else 'member' end \
                   from c, unnest(array_prepend($2, $3::uuid[])) u) \
                 select conversation_id from c",
            )
            .bind(name.as_str())
            .bind(creator)
            .bind(members)
            .fetch_one(&mut *tx)
            .await
            .on_constraint("conversation_participants_user_id_fkey", |_| {
                ApiError::invalid("participant_ids", "names an unknown user")
            })?;
            (members.clone(), Some(id))
        }
    };
    let (id, created) = match (inserted, &new) {
        (Some(id), _) => (id, true),
        // Only a direct chat can meet an existing row (its direct_key); group inserts always return one.
        (None, new) => {
            let NewConversation::Direct { with } = new else {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "group insert returned no row"
                )));
            };
            let id = sqlx::query_scalar::<_, Uuid>(
                "select conversation_id from conversations where direct_key = $1",
            )
            .bind(direct_key(creator, *with))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| ApiError::Conflict("the conversation changed; try again".into()))?;
            (id, false)
        }
    };
    let summary = conversation_summary(&mut *tx, creator, id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let mut recipients = others;
    recipients.push(creator);
    if created {
        changes::record(
            &mut tx,
            id,
            events::CONVERSATION_CREATED,
            &summary.conversation,
            &recipients,
            &[],
            &[],
        )
        .await?;
    }
    tx.commit().await?;
    if created {
        publish(
            state,
            events::CONVERSATION_CREATED,
            &recipients,
            &summary.conversation,
        )
        .await;
        if let NewConversation::Group { name, members } = &new {
            invite(state, id, name.as_str(), creator, members).await;
        }
    }
    Ok((summary, created))
}

/// `group_invite` notifications for users just put into a group. The membership is
/// committed already, so a failure here is logged rather than undoing the request.
async fn invite(state: &AppState, id: Uuid, group: &str, inviter: Uuid, invitees: &[Uuid]) {
    if let Err(e) =
        crate::social::notifications::notify_group_invite(state, id, group, inviter, invitees).await
    {
        tracing::warn!(error = %e, conversation = %id, "group invitations not stored");
    }
}

/// Serializes membership changes of one conversation (so "last participant" and owner
/// hand-over are decided on a stable member list) without blocking sends, which never
/// take this lock.
async fn lock_membership(conn: &mut PgConnection, id: Uuid) -> ApiResult<()> {
    sqlx::query("select pg_advisory_xact_lock(hashtext('chatty.conversation_membership'), hashtext($1::text))")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds users to a group (any participant may) and announces `participantsAdded` to old
/// and new members. New members start caught up: their cursors are the current `last_seq`,
/// so the aggregate status of older messages does not change. Members already present are
/// left as they are; when nobody is new nothing is published.
#[tracing::instrument(skip(state, user_ids))]
pub async fn add_participants(
    state: &AppState,
    caller: Uuid,
    conversation_id: Uuid,
    user_ids: &[Uuid],
) -> ApiResult<ConversationView> {
    let ids = distinct(user_ids);
    if ids.is_empty() {
        return Err(ApiError::invalid("userIds", "must name at least one user"));
    }
    if ids.len() > MAX_PARTICIPANTS_PER_REQUEST {
        return Err(ApiError::invalid(
            "userIds",
            format!("must name at most {MAX_PARTICIPANTS_PER_REQUEST} users"),
        ));
    }
    let mut tx = state.db.begin().await?;
    lock_membership(&mut tx, conversation_id).await?;
    // The counter row stays locked until commit, so no message lands between reading
    // last_seq and the new members' rows becoming visible.
    let (is_group, last_seq) = sqlx::query_as::<_, (bool, i64)>(
        "select c.is_group, c.last_seq from conversations c \
         where c.conversation_id = $1 and exists(select 1 from conversation_participants me \
           where me.conversation_id = c.conversation_id and me.user_id = $2) \
         for no key update",
    )
    .bind(conversation_id)
    .bind(caller)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("conversation"))?;
    if !is_group {
        return Err(ApiError::BadRequest(
            "participants can only be added to group conversations".into(),
        ));
    }
    require_users(&mut *tx, &ids, "userIds").await?;
    refuse_blockers(&mut *tx, caller, &ids, Some(conversation_id)).await?;
    // Members already present are left out before the insert rather than by its conflict
    // check, which would wait for a receipt of theirs in flight; that receipt waits for the
    // conversation row this transaction holds. The membership lock keeps the list stable.
    let added = sqlx::query_scalar::<_, Uuid>(
        "insert into conversation_participants (conversation_id, user_id, last_delivered_seq, last_read_seq) \
         select $1, u, $3, $3 from unnest($2::uuid[]) u \
         where not exists (select 1 from conversation_participants p \
           where p.conversation_id = $1 and p.user_id = u) \
         on conflict on constraint conversation_participants_pkey do nothing returning user_id",
    )
    .bind(conversation_id)
    .bind(&ids)
    .bind(last_seq)
    .fetch_all(&mut *tx)
    .await
    .on_constraint("conversation_participants_user_id_fkey", |_| {
        ApiError::invalid("userIds", "names an unknown user")
    })?;
    let view = conversation_view(&mut *tx, conversation_id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let event = ParticipantsAdded {
        conversation_id,
        user_ids: added.clone(),
        conversation: view.clone(),
    };
    if !added.is_empty() {
        changes::record(
            &mut tx,
            conversation_id,
            events::PARTICIPANTS_ADDED,
            &event,
            &view.participant_ids(),
            &added,
            &[],
        )
        .await?;
    }
    tx.commit().await?;
    if !added.is_empty() {
        publish(
            state,
            events::PARTICIPANTS_ADDED,
            &view.participant_ids(),
            &event,
        )
        .await;
        let group = view.name.as_deref().unwrap_or_default();
        invite(state, conversation_id, group, caller, &added).await;
        publish_rooms(state, added, conversation_id, true).await;
    }
    Ok(view)
}

/// Removes `target` from a group and announces `participantRemoved` to the remaining
/// members and to the removed user, whose sockets also leave the conversation's room.
/// Anyone may leave; removing someone else takes the owner or an admin (admins cannot
/// remove the owner). The last participant cannot leave. When the owner leaves, the
/// longest-standing admin (else member) becomes owner, so every group keeps one.
#[tracing::instrument(skip(state))]
pub async fn remove_participant(
    state: &AppState,
    caller: Uuid,
    conversation_id: Uuid,
    target: Uuid,
) -> ApiResult<ConversationView> {
    let mut tx = state.db.begin().await?;
    lock_membership(&mut tx, conversation_id).await?;
    let (is_group, caller_role) = sqlx::query_as::<_, (bool, String)>(
        "select c.is_group, me.role from conversations c \
         join conversation_participants me on me.conversation_id = c.conversation_id and me.user_id = $2 \
         where c.conversation_id = $1",
    )
    .bind(conversation_id)
    .bind(caller)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("conversation"))?;
    if !is_group {
        return Err(ApiError::BadRequest(
            "participants can only be removed from group conversations".into(),
        ));
    }
    let (target_role, members) = sqlx::query_as::<_, (Option<String>, i64)>(
        "select max(role) filter (where user_id = $2), count(*) from conversation_participants \
         where conversation_id = $1",
    )
    .bind(conversation_id)
    .bind(target)
    .fetch_one(&mut *tx)
    .await?;
    let target_role = target_role.ok_or_else(|| ApiError::not_found("participant"))?;
    if target != caller {
        let allowed = match caller_role.as_str() {
            "owner" => true,
            "admin" => target_role != "owner",
            _ => false,
        };
        if !allowed {
            return Err(ApiError::Forbidden(
                "only the group's owner or an admin can remove other participants".into(),
            ));
        }
    }
    if members <= 1 {
        return Err(ApiError::BadRequest(
            "the last participant cannot be removed".into(),
        ));
    }
    sqlx::query(
        "delete from conversation_participants where conversation_id = $1 and user_id = $2",
    )
    .bind(conversation_id)
    .bind(target)
    .execute(&mut *tx)
    .await?;
    if target_role == "owner" {
        sqlx::query(
            "update conversation_participants set role = 'owner' \
             where conversation_id = $1 and user_id = (select user_id from conversation_participants \
               where conversation_id = $1 order by role = 'admin' desc, joined_at, user_id limit 1)",
        )
        .bind(conversation_id)
        .execute(&mut *tx)
        .await?;
    }
    let view = conversation_view(&mut *tx, conversation_id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let mut recipients = view.participant_ids();
    recipients.push(target);
    let event = ParticipantRemoved {
        conversation_id,
        user_id: target,
    };
    changes::record(
        &mut tx,
        conversation_id,
        events::PARTICIPANT_REMOVED,
        &event,
        &recipients,
        &[],
        &[target],
    )
    .await?;
    tx.commit().await?;
    publish(state, events::PARTICIPANT_REMOVED, &recipients, &event).await;
    publish_rooms(state, vec![target], conversation_id, false).await;
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_chat_is_the_creator_and_exactly_one_other_user() {
        let (me, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            NewConversation::parse(me, None, false, &[a]).unwrap(),
            NewConversation::Direct { with: a }
        );
        assert_eq!(
            NewConversation::parse(me, None, false, &[me, a, a]).unwrap(),
            NewConversation::Direct { with: a }
        );
        assert!(NewConversation::parse(me, None, false, &[]).is_err());
        assert!(NewConversation::parse(me, None, false, &[me]).is_err());
        assert!(NewConversation::parse(me, None, false, &[a, b]).is_err());
    }

    #[test]
    fn a_group_needs_a_name_and_never_lists_its_creator_twice() {
        let (me, a) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(NewConversation::parse(me, None, true, &[a]).is_err());
        assert!(NewConversation::parse(me, Some("  "), true, &[a]).is_err());
        let g = NewConversation::parse(me, Some(" Team "), true, &[a, me, a]).unwrap();
        let NewConversation::Group { name, members } = g else {
            panic!("not a group")
        };
        assert_eq!(name.as_str(), "Team");
        assert_eq!(members, vec![a]);
    }

    #[test]
    fn the_direct_key_does_not_depend_on_who_asks() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(direct_key(a, b), direct_key(b, a));
    }
}
