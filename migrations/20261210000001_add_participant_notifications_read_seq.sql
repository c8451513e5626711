-- How far the participant's notifications for the conversation have been read, as a seq:
-- read-all and reading the conversation's message notification set it to the
-- conversation's last_seq. The notifier writes message notifications a moment after the
-- send; a message at or below this seq (like one at or below last_read_seq) is left out
-- of them, so a read covers every message stored before it however late its notification
-- is written, and a message stored after it (a higher seq) still notifies. Only moves
-- forward.
alter table conversation_participants add column notifications_read_seq bigint not null default 0;
