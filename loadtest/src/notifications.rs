//! With `--notifications`: each device's second socket, on `/notifications` with the same
//! token, and the delivery latency of message notifications it measures.
//!
//! A sent message creates or updates, for every other participant, one unread `message`
//! notification per conversation, announced as a `notification` event to `user:{id}`. Its
//! preview is the start of the latest message's content, where this tool puts the send
//! time, so the latency is from that message's send to the event's arrival. Notifications
//! collapse per recipient and conversation (a count that goes up, the latest preview), so
//! fewer events than message deliveries is how it works, not a loss: only the latency of
//! the events that arrive is measured. A collapsed event stands for its latest message,
//! the one its preview shows; the earlier messages it covers waited longer.
//!
//! What counts as what:
//! - an unread `message` notification whose preview starts with this tool's send time is
//!   an event, and one latency sample;
//! - an unread `message` notification whose preview carries no send time is unparsed:
//!   counted apart, not a failure;
//! - anything else (other types, a message notification marked read) is other.

use std::sync::{Arc, atomic::Ordering};

use chatty_testkit::{Incoming, SioClient};
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    device::{self, Link, Spec},
    stats::{self, NOTIFIED},
};

/// The Socket.IO namespace of the notification centre.
pub const NAMESPACE: &str = "/notifications";

/// What one `notification` event is, for the measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// An unread message notification, with the send time (load tool clock, ns) its preview
    /// starts with, if it does.
    Message(Option<u128>),
    Other,
}

/// The send time a message preview starts with: the content this tool sends is
/// `{stamp}|{send}|xxx…` (see `crate::message_content`), and a preview is its first 100
/// characters. In a group's `content` the preview follows `{sender}: `, so that prefix is
/// skipped.
pub fn stamp_of_preview(preview: &str) -> Option<u128> {
    let (head, _) = preview.split_once('|')?;
    let head = head.rsplit_once(": ").map_or(head, |(_, stamp)| stamp);
    if head.is_empty() || !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    head.parse().ok()
}

/// Reads one `notification` event: the raw preview in `metadata.message_preview` when
/// present, else the displayed `content`.
pub fn classify(v: &Value) -> Notice {
    if v["type"] != "message" || v["is_read"] == true {
        return Notice::Other;
    }
    let stamp = v["metadata"]["message_preview"]
        .as_str()
        .and_then(stamp_of_preview)
        .or_else(|| v["content"].as_str().and_then(stamp_of_preview));
    Notice::Message(stamp)
}

/// What one device's `/notifications` socket saw.
pub struct NotificationStats {
    /// Unread message notifications with a send time: the latency samples.
    pub events: u64,
    /// Unread message notifications whose preview gave no send time.
    pub unparsed: u64,
    /// Every other `notification` event.
    pub other: u64,
    pub latency_us: Histogram<u64>,
    /// Ended without a socket (resume off and its socket died, or it never came back).
    pub disconnected: bool,
    pub reconnects: u64,
}

impl NotificationStats {
    pub fn new() -> Self {
        Self {
            events: 0,
            unparsed: 0,
            other: 0,
            latency_us: stats::histogram(),
            disconnected: false,
            reconnects: 0,
        }
    }

    /// Counts one `notification` event that arrived at `now` (ns on the load tool's clock).
    pub fn receive(&mut self, data: &Value, now: u128) {
        match classify(data) {
            Notice::Message(Some(stamp)) => {
                self.events += 1;
                NOTIFIED.fetch_add(1, Ordering::Relaxed);
                #[allow(clippy::cast_possible_truncation)]
                let us = (now.saturating_sub(stamp) / 1000) as u64;
                let _ = self.latency_us.record(us.max(1));
            }
            Notice::Message(None) => self.unparsed += 1,
            Notice::Other => self.other += 1,
        }
    }
}

/// Runs one device's `/notifications` socket until `finish` and reports what it saw.
/// Resuming, a dropped socket reconnects like the chat socket does; notifications missed
/// meanwhile are not fetched again (the centre keeps them; only live latency is measured).
pub async fn run(
    link: Arc<Link>,
    mut spec: Spec,
    first: SioClient,
    finish: CancellationToken,
) -> NotificationStats {
    let mut st = NotificationStats::new();
    let mut client = Some(first);
    while let Some(c) = client.take() {
        let (_sender, mut events) = c.split();
        loop {
            tokio::select! {
                () = finish.cancelled() => return st,
                ev = events.recv() => match ev {
                    Some(Incoming::Event { name, data }) if name == "notification" => {
                        st.receive(&data, link.clock.elapsed().as_nanos());
                    }
                    Some(Incoming::Event { .. }) => {}
                    Some(Incoming::Disconnected | Incoming::Closed) | None => break,
                },
            }
        }
        if !link.resume {
            break;
        }
        let mut finish_by = None;
        client = tokio::select! {
            c = device::reconnect(&link, &mut spec, NAMESPACE, &finish, &mut finish_by) => c,
            () = finish.cancelled() => None,
        };
        if client.is_some() {
            st.reconnects += 1;
        }
    }
    st.disconnected = true;
    st
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn notification(kind: &str, content: &str, preview: Option<&str>) -> Value {
        let mut metadata = json!({ "sender_name": "lt1_2" });
        if let Some(p) = preview {
            metadata["message_preview"] = json!(p);
        }
        json!({ "type": kind, "title": "g", "content": content, "metadata": metadata, "count": 3, "is_read": false })
    }

    #[test]
    fn the_send_time_is_read_from_the_start_of_a_preview() {
        assert_eq!(stamp_of_preview("123456789|42|xxxx"), Some(123_456_789));
        assert_eq!(stamp_of_preview("lt1a_3: 123|42|xxxx"), Some(123));
        assert_eq!(stamp_of_preview("123|xxxx…"), Some(123));
    }

    #[test]
    fn a_preview_without_a_send_time_gives_none() {
        assert_eq!(stamp_of_preview("hello world"), None);
        assert_eq!(stamp_of_preview("|42|xx"), None);
        assert_eq!(stamp_of_preview("12a|42|xx"), None);
        assert_eq!(stamp_of_preview("-5|42|xx"), None);
        assert_eq!(stamp_of_preview("lt1_3: hi|there"), None);
    }

    #[test]
    fn the_send_time_survives_the_servers_preview_of_the_content_this_tool_sends() {
        for size in [24, 64, 99, 100, 101, 4000] {
            let padding = "x".repeat(size);
            let content = crate::message_content(987_654_321_012, 77, &padding);
            let preview = chatty::social::notifications::message_preview(&content);
            assert_eq!(
                stamp_of_preview(&preview),
                Some(987_654_321_012),
                "size {size}"
            );
        }
    }

    #[test]
    fn a_group_notification_is_read_from_its_raw_preview_or_else_its_content() {
        let n = notification("message", "lt1_2: 555|1|xx", Some("555|1|xx"));
        assert_eq!(classify(&n), Notice::Message(Some(555)));
        let n = notification("message", "lt1_2: 556|1|xx", None);
        assert_eq!(classify(&n), Notice::Message(Some(556)));
        let n = notification("message", "lt1_2: hello", Some("hello"));
        assert_eq!(classify(&n), Notice::Message(None));
    }

    #[test]
    fn other_kinds_and_read_message_notifications_are_not_measured() {
        let n = notification("friend_request", "555|1|xx", None);
        assert_eq!(classify(&n), Notice::Other);
        let mut n = notification("message", "555|1|xx", Some("555|1|xx"));
        n["is_read"] = json!(true);
        assert_eq!(classify(&n), Notice::Other);
    }

    #[test]
    fn each_event_is_counted_as_a_sample_unparsed_or_other() {
        let mut st = NotificationStats::new();
        st.receive(
            &notification("message", "x", Some("1000000|1|xx")),
            4_000_000,
        );
        st.receive(&notification("message", "hello", Some("hello")), 4_000_000);
        st.receive(&notification("system", "hi", None), 4_000_000);
        assert_eq!((st.events, st.unparsed, st.other), (1, 1, 1));
        assert_eq!(st.latency_us.len(), 1);
        assert!(st.latency_us.equivalent(st.latency_us.max(), 3000));
    }
}
