//! A bus message on the wire: one payload per addressee room's channel, without the
//! addressees (the channel names its room), so an event for 500 users is serialized once
//! and published 500 times as the same bytes; and the way back, from the rooms a node
//! heard one payload on to the message it delivers.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{BusMessage, Emit, Namespace, StreamPosition, room};

/// One payload and the rooms whose channels carry it, by their bus names
/// ([`room::on_bus`]).
pub struct Routed<'a> {
    pub rooms: Vec<Cow<'a, str>>,
    pub payload: Vec<u8>,
}

/// `BusMessage` as published: the same encoding with the addressees left out, borrowed
/// so that publishing copies no payload.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Wire<'a> {
    Emit(EmitBody<'a>),
    DisconnectSessions {},
    Rooms {
        join: &'a [String],
        leave: &'a [String],
    },
}

#[derive(Serialize)]
struct EmitBody<'a> {
    ns: Namespace,
    event: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    except: &'a [String],
    data: &'a RawValue,
    sent_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<StreamPosition>,
}

fn emit(e: &Emit) -> Result<Routed<'_>, serde_json::Error> {
    let body = Wire::Emit(EmitBody {
        ns: e.ns,
        event: &e.event,
        except: &e.except,
        data: &e.data,
        sent_at_ms: e.sent_at_ms,
        order: e.order,
    });
    Ok(Routed {
        rooms: e.rooms.iter().map(|r| room::on_bus(e.ns, r)).collect(),
        payload: serde_json::to_vec(&body)?,
    })
}

/// What to publish for `msg`, in order: each payload on the channel of each of its rooms.
pub fn route(msg: &BusMessage) -> Result<Vec<Routed<'_>>, serde_json::Error> {
    Ok(match msg {
        BusMessage::Emit(e) => vec![emit(e)?],
        BusMessage::EmitMany(list) => list.iter().map(emit).collect::<Result<_, _>>()?,
        // A device's sockets of both namespaces go.
        BusMessage::DisconnectSessions { sessions } => vec![Routed {
            rooms: sessions
                .iter()
                .map(|s| room::session(*s))
                .flat_map(|r| {
                    [
                        room::on_bus(Namespace::Notifications, &r)
                            .into_owned()
                            .into(),
                        r.into(),
                    ]
                })
                .collect(),
            payload: serde_json::to_vec(&Wire::DisconnectSessions {})?,
        }],
        BusMessage::Rooms { users, join, leave } => vec![Routed {
            rooms: users.iter().map(|u| room::user(*u).into()).collect(),
            payload: serde_json::to_vec(&Wire::Rooms { join, leave })?,
        }],
        BusMessage::Resubscribed { .. } => Vec::new(),
    })
}

/// The message a node delivers for `payload`, heard on the channels of `rooms` (rooms, not
/// bus names); `None` for what no node publishes.
pub fn addressed(payload: &[u8], rooms: Vec<String>) -> Result<Option<BusMessage>, String> {
    let msg = serde_json::from_slice::<BusMessage>(payload).map_err(|e| e.to_string())?;
    let ids = |of: fn(&str) -> Option<Uuid>| {
        let mut ids: Vec<Uuid> = rooms.iter().filter_map(|r| of(r)).collect();
        // A session heard on the channels of both namespaces is one session.
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    Ok(Some(match msg {
        BusMessage::Emit(e) => BusMessage::Emit(Emit { rooms, ..e }),
        BusMessage::EmitMany(list) => BusMessage::EmitMany(
            list.into_iter()
                .map(|e| Emit {
                    rooms: rooms.clone(),
                    ..e
                })
                .collect(),
        ),
        BusMessage::DisconnectSessions { .. } => BusMessage::DisconnectSessions {
            sessions: ids(room::session_of),
        },
        BusMessage::Rooms { join, leave, .. } => BusMessage::Rooms {
            users: ids(room::user_of),
            join,
            leave,
        },
        BusMessage::Resubscribed { .. } => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heard(routed: &Routed) -> BusMessage {
        let rooms = routed
            .rooms
            .iter()
            .map(|r| room::off_bus(r).to_owned())
            .collect();
        addressed(&routed.payload, rooms).unwrap().unwrap()
    }

    #[test]
    fn an_emit_travels_without_its_rooms_and_arrives_with_them() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let sent = Emit::new(
            Namespace::Chat,
            "newMessage",
            vec![room::user(a), room::user(b)],
            &serde_json::json!({ "content": "hi" }),
        )
        .unwrap()
        .ordered(c, 7)
        .except(vec![room::user(a)]);
        let msg = BusMessage::Emit(sent.clone());
        let routed = route(&msg).unwrap();
        assert_eq!(routed.len(), 1);
        let text = String::from_utf8(routed[0].payload.clone()).unwrap();
        assert!(!text.contains(&b.to_string()), "{text}");
        let BusMessage::Emit(got) = heard(&routed[0]) else {
            panic!("not an emit");
        };
        assert_eq!(got.rooms, sent.rooms);
        assert_eq!(got.except, sent.except);
        assert_eq!(got.order, sent.order);
        assert_eq!(got.event, sent.event);
        assert_eq!(got.data.get(), sent.data.get());
        assert_eq!(got.sent_at_ms, sent.sent_at_ms);
    }

    #[test]
    fn disconnects_and_room_moves_are_addressed_by_their_channels() {
        let (s1, s2, u, c) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let msg = BusMessage::DisconnectSessions {
            sessions: vec![s1, s2],
        };
        let routed = route(&msg).unwrap();
        let BusMessage::DisconnectSessions { sessions } = heard(&routed[0]) else {
            panic!("not a disconnect");
        };
        let mut both = vec![s1, s2];
        both.sort_unstable();
        assert_eq!(sessions, both);
        assert_eq!(routed[0].rooms.len(), 4, "both namespaces of both sessions");
        let msg = BusMessage::Rooms {
            users: vec![u],
            join: vec![room::conversation(c)],
            leave: Vec::new(),
        };
        let routed = route(&msg).unwrap();
        let BusMessage::Rooms { users, join, leave } = heard(&routed[0]) else {
            panic!("not a room move");
        };
        assert_eq!(
            (users, join, leave),
            (vec![u], vec![room::conversation(c)], vec![])
        );
    }

    #[test]
    fn several_events_go_out_in_order_each_on_its_own_rooms() {
        let rooms = |id: Uuid| vec![room::user(id)];
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let one = Emit::new(Namespace::Notifications, "n", rooms(a), &1).unwrap();
        let two = Emit::new(Namespace::Notifications, "n", rooms(b), &2).unwrap();
        let msg = BusMessage::EmitMany(vec![one, two]);
        let routed = route(&msg).unwrap();
        assert_eq!(routed.len(), 2);
        assert_eq!(routed[0].rooms, [format!("notifications/user:{a}")]);
        assert_eq!(routed[1].rooms, [format!("notifications/user:{b}")]);
        assert!(
            route(&BusMessage::Resubscribed { missed_ms: 1 })
                .unwrap()
                .is_empty()
        );
    }
}
