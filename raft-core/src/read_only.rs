//! Bookkeeping of linearizable read requests on the leader (Raft thesis §6.4).

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::types::{Message, NodeId};

/// How a leader confirms a `read_index` request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub enum ReadOnlyOption {
    /// The leader confirms it is still leader by a round of heartbeats acked
    /// by a quorum (Raft thesis §6.4). Safe under any clock behaviour.
    #[default]
    Safe,
    /// The leader answers from its lease (it heard from a quorum within the
    /// election timeout, enforced by check-quorum). Saves the round trip but
    /// relies on bounded clock drift (Raft thesis §6.4.1).
    LeaseBased,
}

/// A read request waiting for a quorum of heartbeat acks.
#[derive(Debug)]
pub(crate) struct ReadIndexStatus {
    /// The original request (its `entries[0].data` is the context).
    pub(crate) req: Message,
    /// The commit index when the request arrived: the read index.
    pub(crate) index: u64,
    /// The nodes that acked the heartbeat carrying this request's context.
    pub(crate) acks: BTreeSet<NodeId>,
}

/// The leader's queue of pending read requests, in arrival order.
///
/// Invariant: `read_index_queue` holds exactly the keys of
/// `pending_read_index`, in the order the requests arrived.
#[derive(Debug, Default)]
pub(crate) struct ReadOnly {
    pub(crate) option: ReadOnlyOption,
    pending_read_index: HashMap<Bytes, ReadIndexStatus>,
    read_index_queue: VecDeque<Bytes>,
}

impl ReadOnly {
    pub(crate) fn new(option: ReadOnlyOption) -> Self {
        ReadOnly {
            option,
            ..Default::default()
        }
    }

    /// Queues a read request `m` whose read index is `index` (the leader's
    /// commit index when it arrived). A request whose context is already
    /// pending is ignored: it will be answered with the first one.
    pub(crate) fn add_request(&mut self, index: u64, m: Message) {
        let ctx = m.entries[0].data.clone();
        if self.pending_read_index.contains_key(&ctx) {
            return;
        }
        self.read_index_queue.push_back(ctx.clone());
        self.pending_read_index.insert(
            ctx,
            ReadIndexStatus {
                req: m,
                index,
                acks: BTreeSet::new(),
            },
        );
    }

    /// Records that `id` acked the heartbeat carrying `ctx`, and returns the
    /// acks so far (None if no such request is pending).
    pub(crate) fn recv_ack(&mut self, id: NodeId, ctx: &[u8]) -> Option<&BTreeSet<NodeId>> {
        let rs = self.pending_read_index.get_mut(ctx)?;
        rs.acks.insert(id);
        Some(&rs.acks)
    }

    /// Dequeues the request with the context of `m` and every request queued
    /// before it (a quorum that confirms a later heartbeat confirms the earlier
    /// ones too), returning them in order.
    pub(crate) fn advance(&mut self, m: &Message) -> Vec<ReadIndexStatus> {
        let ctx = &m.context;
        let Some(pos) = self.read_index_queue.iter().position(|c| c == ctx) else {
            return Vec::new();
        };
        self.read_index_queue
            .drain(..=pos)
            .map(|c| {
                self.pending_read_index
                    .remove(&c)
                    .expect("read_index_queue and pending_read_index out of sync")
            })
            .collect()
    }

    /// The context of the newest pending request, sent with heartbeats so
    /// that their acks confirm every request pending.
    pub(crate) fn last_pending_request_ctx(&self) -> Option<Bytes> {
        self.read_index_queue.back().cloned()
    }

    /// The number of pending requests.
    #[cfg(test)]
    pub(crate) fn pending_count(&self) -> usize {
        self.read_index_queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Entry, MessageType};

    fn req(ctx: &'static [u8]) -> Message {
        let mut m = Message::new(MessageType::ReadIndex, 1, 1);
        m.entries.push(Entry::new(0, 0, Bytes::from_static(ctx)));
        m
    }

    #[test]
    fn advance_releases_everything_up_to_the_acked_context() {
        let mut ro = ReadOnly::new(ReadOnlyOption::Safe);
        ro.add_request(5, req(b"a"));
        ro.add_request(6, req(b"b"));
        ro.add_request(7, req(b"c"));
        ro.add_request(8, req(b"b")); // duplicate context: ignored
        assert_eq!(ro.pending_count(), 3);
        assert_eq!(ro.last_pending_request_ctx().unwrap(), &b"c"[..]);
        assert_eq!(ro.recv_ack(2, b"b").unwrap().len(), 1);
        assert!(ro.recv_ack(2, b"zz").is_none());
        let mut ack = Message::new(MessageType::HeartbeatResp, 2, 1);
        ack.context = Bytes::from_static(b"b");
        let done = ro.advance(&ack);
        assert_eq!(done.iter().map(|s| s.index).collect::<Vec<_>>(), vec![5, 6]);
        assert_eq!(ro.pending_count(), 1);
        assert!(ro.advance(&ack).is_empty());
    }
}
