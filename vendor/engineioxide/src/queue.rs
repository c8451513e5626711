//! The outgoing packet queue of a [`Socket`](crate::Socket).
//!
//! It replaces a bounded `tokio::sync::mpsc` channel plus a `watch` channel for volatile
//! packets. Those allocate their storage when they are created: the first 32-slot block of
//! the mpsc channel alone is about 5 KB with a [`PacketBuf`] per slot, and the `watch`
//! channel's notifiers about 1 KB, kept for the whole life of every socket, idle or not.
//! This queue allocates only while packets wait and gives its buffer back once the
//! transport has drained it, so an idle socket keeps none.
//!
//! There is one consumer at a time (the transport that holds the socket's reader lock) and
//! any number of producers, which never wait: a full queue is reported to the caller.

use std::{
    collections::VecDeque,
    future::poll_fn,
    sync::Mutex,
    task::{Context, Poll, Waker},
};

use engineioxide_core::PacketBuf;
use tokio::sync::{Notify, mpsc::error::TrySendError};

/// Packets kept allocated in a drained queue. None: an idle connection keeps no buffer, and
/// a burst costs one allocation however many packets it has.
const IDLE_CAPACITY: usize = 0;

#[derive(Debug)]
struct State {
    packets: VecDeque<PacketBuf>,
    /// Places promised to [`Permit`]s not yet used.
    reserved: usize,
    /// The latest volatile packets: they skip the buffer and replace each other. Boxed:
    /// most sockets never get one, and every socket would carry its room.
    volatile: Option<Box<PacketBuf>>,
    closed: bool,
    consumer: Option<Waker>,
}

#[derive(Debug)]
pub(crate) struct PacketQueue {
    state: Mutex<State>,
    capacity: usize,
    closed: Notify,
}

impl PacketQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                packets: VecDeque::new(),
                reserved: 0,
                volatile: None,
                closed: false,
                consumer: None,
            }),
            capacity: capacity.max(1),
            closed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A producer that panicked while holding the lock left the state consistent: every
        // update below is a single push, pop or assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues packets unless the queue is full or closed.
    pub(crate) fn try_send(&self, packets: PacketBuf) -> Result<(), TrySendError<PacketBuf>> {
        let mut state = self.lock();
        if state.closed {
            return Err(TrySendError::Closed(packets));
        }
        if state.packets.len() + state.reserved >= self.capacity {
            return Err(TrySendError::Full(packets));
        }
        state.packets.push_back(packets);
        wake(&mut state);
        Ok(())
    }

    /// Holds one place in the queue for a later [`Permit::send`].
    pub(crate) fn try_reserve(&self) -> Result<Permit<'_>, TrySendError<()>> {
        let mut state = self.lock();
        if state.closed {
            return Err(TrySendError::Closed(()));
        }
        if state.packets.len() + state.reserved >= self.capacity {
            return Err(TrySendError::Full(()));
        }
        state.reserved += 1;
        Ok(Permit { queue: self })
    }

    /// Replaces the pending volatile packets. False once the queue is closed.
    pub(crate) fn send_volatile(&self, packets: PacketBuf) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.volatile = Some(Box::new(packets));
        wake(&mut state);
        true
    }

    /// The next packets: buffered ones first, then the pending volatile ones. `None` once
    /// the queue is closed and empty.
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<PacketBuf>> {
        let mut state = self.lock();
        if let Some(packets) = take(&mut state) {
            return Poll::Ready(Some(packets));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.consumer {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Ready once packets wait (true) or the queue is closed and empty (false), taking none.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut state = self.lock();
        if !state.packets.is_empty() || state.volatile.is_some() {
            return Poll::Ready(true);
        }
        if state.closed {
            return Poll::Ready(false);
        }
        match &mut state.consumer {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    pub(crate) async fn ready(&self) -> bool {
        poll_fn(|cx| self.poll_ready(cx)).await
    }

    #[cfg(any(test, feature = "__test_harness"))]
    pub(crate) async fn recv(&self) -> Option<PacketBuf> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next packets if some are waiting.
    pub(crate) fn try_recv(&self) -> Option<PacketBuf> {
        take(&mut self.lock())
    }

    /// No more packets are accepted; those already queued can still be received.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        wake(&mut state);
        drop(state);
        self.closed.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Resolves once the queue is closed.
    pub(crate) async fn closed(&self) {
        let notified = self.closed.notified();
        tokio::pin!(notified);
        // Registered before the check, so a close in between is not missed.
        notified.as_mut().enable();
        if self.is_closed() {
            return;
        }
        notified.await;
    }
}

fn wake(state: &mut State) {
    if let Some(w) = state.consumer.take() {
        w.wake();
    }
}

fn take(state: &mut State) -> Option<PacketBuf> {
    if let Some(packets) = state.packets.pop_front() {
        if state.packets.is_empty() && state.packets.capacity() > IDLE_CAPACITY {
            state.packets.shrink_to(IDLE_CAPACITY);
        }
        return Some(packets);
    }
    state.volatile.take().map(|p| *p)
}

/// One place in a socket's queue, held until used or dropped.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    queue: &'a PacketQueue,
}

impl Permit<'_> {
    pub(crate) fn send(self, packets: PacketBuf) {
        let mut state = self.queue.lock();
        state.reserved -= 1;
        if !state.closed {
            state.packets.push_back(packets);
            wake(&mut state);
        }
        drop(state);
        std::mem::forget(self);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.queue.lock().reserved -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use engineioxide_core::Packet;
    use smallvec::smallvec;

    use super::*;

    fn ping() -> PacketBuf {
        smallvec![Packet::Ping]
    }

    #[test]
    fn full_counts_reserved_places() {
        let q = PacketQueue::new(2);
        q.try_send(ping()).unwrap();
        let permit = q.try_reserve().unwrap();
        assert!(matches!(q.try_send(ping()), Err(TrySendError::Full(_))));
        assert!(matches!(q.try_reserve(), Err(TrySendError::Full(()))));
        drop(permit);
        q.try_reserve().unwrap().send(ping());
        assert!(q.try_recv().is_some());
        assert!(q.try_recv().is_some());
        assert!(q.try_recv().is_none());
    }

    #[test]
    fn volatile_is_replaced_and_comes_after_buffered() {
        let q = PacketQueue::new(4);
        assert!(q.send_volatile(smallvec![Packet::Pong]));
        assert!(q.send_volatile(smallvec![Packet::Noop]));
        q.try_send(ping()).unwrap();
        assert!(matches!(q.try_recv().unwrap()[0], Packet::Ping));
        assert!(matches!(q.try_recv().unwrap()[0], Packet::Noop));
        assert!(q.try_recv().is_none());
    }

    #[test]
    fn drained_queue_gives_its_buffer_back() {
        let q = PacketQueue::new(128);
        for _ in 0..100 {
            q.try_send(ping()).unwrap();
        }
        while q.try_recv().is_some() {}
        assert!(q.lock().packets.capacity() <= IDLE_CAPACITY);
    }

    #[tokio::test]
    async fn closed_queue_refuses_and_drains() {
        let q = Arc::new(PacketQueue::new(4));
        q.try_send(ping()).unwrap();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.closed().await }
        });
        q.close();
        waiter.await.unwrap();
        assert!(matches!(q.try_send(ping()), Err(TrySendError::Closed(_))));
        assert!(!q.send_volatile(ping()));
        assert!(q.recv().await.is_some());
        assert!(q.recv().await.is_none());
    }

    #[tokio::test]
    async fn receiver_wakes_on_send() {
        let q = Arc::new(PacketQueue::new(4));
        let rx = tokio::spawn({
            let q = q.clone();
            async move { q.recv().await }
        });
        tokio::task::yield_now().await;
        q.try_send(ping()).unwrap();
        assert!(rx.await.unwrap().is_some());
    }
}
