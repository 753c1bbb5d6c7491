//! The replicated key-value state machine: an ordered map and the commands raft carries.
//!
//! Every node applies the same committed [`Command`]s in the same order, so every node's
//! [`StateMachine`] holds the same map and reaches the same outcome for each command (a failed
//! compare-and-set fails everywhere). That is why a node can answer a request it proposed
//! from its own apply, whichever node led when the entry was committed.
//!
//! # Log entry format
//!
//! An entry's data is one tag byte followed by postcard:
//!
//! | tag | payload (postcard) | decoded by |
//! |---|---|---|
//! | `1` | [`Command`] | [`Command::decode`] |
//! | `2` | `(u64, Command)`: a [`Proposal`] id and its command | [`Proposal::decode`] |
//!
//! The tag is the format version: a future change to the encoding takes a new tag, and a
//! node meeting a tag it does not know refuses the entry instead of misreading it.
//!
//! # Snapshot format
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `KVSM` |
//! | 4 | 1 | version, `1` |
//! | 5 | 4 | CRC-32 (IEEE, little-endian) of the body |
//! | 9 | .. | body: postcard map of key (string) to value (bytes), in key order |

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::{
    ApiError, Condition, Limits, ListItem, ListRequest, ListResponse, Request, Response,
};

/// Tag byte of an entry holding a bare [`Command`].
const TAG_COMMAND: u8 = 1;
/// Tag byte of an entry holding a [`Proposal`].
const TAG_PROPOSAL: u8 = 2;

/// Snapshot magic.
const SNAPSHOT_MAGIC: &[u8; 4] = b"KVSM";
/// Snapshot format version.
const SNAPSHOT_VERSION: u8 = 1;
/// Bytes before the snapshot body: magic, version, CRC.
const SNAPSHOT_HEADER: usize = 9;

/// Bytes counted per entry on top of its key and value by [`StateMachine::approx_size`]: the
/// `String` and `Bytes` headers and a share of the B-tree node.
const ENTRY_OVERHEAD: usize = 64;

/// A change to the map, as carried in a raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// Set `key` to `value` if `condition` holds.
    PutIf {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// Checked against the map when the entry is applied, not when it is proposed.
        condition: Condition,
    },
    /// Delete `key`; fails if it is absent.
    Delete {
        /// The key.
        key: String,
    },
    /// Set every pair, in order, as one atomic step.
    Batch {
        /// The pairs; a later pair for the same key wins.
        items: Vec<(String, Bytes)>,
    },
}

/// Why entry data could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The data is empty.
    #[error("empty entry data")]
    Empty,
    /// The tag byte is not one this version writes.
    #[error("unknown entry tag {0}")]
    UnknownTag(u8),
    /// The payload is not a valid encoding.
    #[error("malformed entry: {0}")]
    Malformed(#[from] postcard::Error),
    /// A valid encoding followed by extra bytes.
    #[error("{0} trailing bytes after the entry")]
    TrailingBytes(usize),
}

/// Decodes `T` from `data`, which must start with `tag` and hold nothing after the value.
fn decode_tagged<'a, T: Deserialize<'a>>(tag: u8, data: &'a [u8]) -> Result<T, DecodeError> {
    let (&first, payload) = data.split_first().ok_or(DecodeError::Empty)?;
    if first != tag {
        return Err(DecodeError::UnknownTag(first));
    }
    let (value, rest) = postcard::take_from_bytes(payload)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

fn encode_tagged<T: Serialize>(tag: u8, value: &T) -> Bytes {
    let mut out = vec![tag];
    // Serializing plain data into a Vec cannot fail: postcard errors only on unsupported
    // serde shapes (none here) or a full fixed buffer (a Vec grows).
    out = postcard::to_extend(value, out).expect("postcard encoding into a Vec cannot fail");
    Bytes::from(out)
}

impl Command {
    /// Encodes the command as entry data (tag `1`, see the module docs).
    pub fn encode(&self) -> Bytes {
        encode_tagged(TAG_COMMAND, self)
    }

    /// Decodes entry data written by [`Command::encode`].
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for anything else; never panics, whatever the input.
    pub fn decode(data: &[u8]) -> Result<Command, DecodeError> {
        decode_tagged(TAG_COMMAND, data)
    }
}

/// A command with the id of the request waiting for it.
///
/// A node proposes `Proposal { id, command }` and keeps a waiter under `id`; when it applies
/// an entry whose id it knows, it answers that waiter with the outcome. Proposals forwarded
/// to the leader come back through the log the same way, so the id must be unique across
/// nodes (e.g. the node id in the high bits and a counter below).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposer's request id.
    pub id: u64,
    /// The command.
    pub command: Command,
}

impl Proposal {
    /// Encodes the proposal as entry data (tag `2`, see the module docs).
    pub fn encode(&self) -> Bytes {
        encode_tagged(TAG_PROPOSAL, &(self.id, &self.command))
    }

    /// Decodes entry data written by [`Proposal::encode`].
    ///
    /// # Errors
    ///
    /// [`DecodeError`] for anything else; never panics, whatever the input.
    pub fn decode(data: &[u8]) -> Result<Proposal, DecodeError> {
        let (id, command) = decode_tagged(TAG_PROPOSAL, data)?;
        Ok(Proposal { id, command })
    }
}

/// Why a command was refused. A refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// A compare-and-set condition did not hold.
    #[error("precondition failed for key {key:?}")]
    PreconditionFailed {
        /// The key.
        key: String,
    },
    /// A delete of an absent key.
    #[error("key not found: {key:?}")]
    NotFound {
        /// The key.
        key: String,
    },
}

impl From<ApplyError> for ApiError {
    fn from(err: ApplyError) -> Self {
        match &err {
            ApplyError::PreconditionFailed { .. } => ApiError::precondition_failed(err.to_string()),
            ApplyError::NotFound { .. } => ApiError::not_found(err.to_string()),
        }
    }
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Shorter than the header.
    #[error("snapshot of {0} bytes is shorter than its 9-byte header")]
    Truncated(usize),
    /// The magic is wrong: not a state-machine snapshot.
    #[error("not a state machine snapshot (bad magic)")]
    BadMagic,
    /// A version this build does not read.
    #[error("unsupported snapshot version {0}")]
    UnsupportedVersion(u8),
    /// The body does not match its checksum.
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the body.
        computed: u32,
    },
    /// The body passed the checksum but does not decode.
    #[error("malformed snapshot body: {0}")]
    Malformed(String),
}

/// The key-value map every node applies committed commands to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateMachine {
    map: BTreeMap<String, Bytes>,
    // Invariant: data_bytes == sum of key.len() + value.len() over `map`.
    data_bytes: usize,
}

impl StateMachine {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one committed command.
    ///
    /// # Errors
    ///
    /// [`ApplyError::PreconditionFailed`] when a `PutIf` condition fails,
    /// [`ApplyError::NotFound`] when a `Delete` finds no key; the map is then unchanged.
    pub fn apply(&mut self, cmd: Command) -> Result<(), ApplyError> {
        match cmd {
            Command::Put { key, value } => self.insert(key, value),
            Command::PutIf {
                key,
                value,
                condition,
            } => {
                let current = self.map.get(&key);
                let holds = match &condition {
                    Condition::PrevValue(prev) => current == Some(prev),
                    Condition::PrevExist(exist) => current.is_some() == *exist,
                };
                if !holds {
                    return Err(ApplyError::PreconditionFailed { key });
                }
                self.insert(key, value);
            }
            Command::Delete { key } => match self.map.remove(&key) {
                Some(old) => self.data_bytes -= key.len() + old.len(),
                None => return Err(ApplyError::NotFound { key }),
            },
            // Puts cannot fail, so applying them one by one is atomic: no reader sees the map
            // between two of them, since apply holds `&mut self`.
            Command::Batch { items } => {
                for (key, value) in items {
                    self.insert(key, value);
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, key: String, value: Bytes) {
        let (key_len, value_len) = (key.len(), value.len());
        match self.map.insert(key, value) {
            // The key was counted when it was first inserted.
            Some(old) => self.data_bytes = self.data_bytes - old.len() + value_len,
            None => self.data_bytes += key_len + value_len,
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Bytes> {
        self.map.get(key)
    }

    /// Up to `limit` entries whose key starts with `prefix` and is greater than `after`, in
    /// key order, and whether more such keys follow.
    pub fn list<'s>(
        &'s self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<(&'s str, &'s Bytes)>, bool) {
        let mut iter = self.scan(prefix, after);
        let items: Vec<_> = iter.by_ref().take(limit).collect();
        let more = iter.next().is_some();
        (items, more)
    }

    fn scan<'s, 'p>(
        &'s self,
        prefix: &'p str,
        after: Option<&'p str>,
    ) -> impl Iterator<Item = (&'s str, &'s Bytes)> {
        // Every key with the prefix is >= the prefix, so a cursor below it starts nowhere new.
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        self.map
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(k, v)| (k.as_str(), v))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// One page of a list request, within `limits`: at most `req.limit` (or
    /// [`Limits::max_list`]) items, and, with values, at most [`Limits::max_list_bytes`]
    /// bytes of keys and values unless the first item alone is larger.
    pub fn list_page(&self, req: &ListRequest, limits: &Limits) -> ListResponse {
        let limit = req
            .limit
            .map_or(limits.max_list, |l| l as usize)
            .min(limits.max_list);
        let mut iter = self.scan(&req.prefix, req.after.as_deref()).peekable();
        let mut items = Vec::new();
        let mut bytes = 0usize;
        while items.len() < limit {
            let Some(&(key, value)) = iter.peek() else {
                break;
            };
            let size = key.len() + if req.values { value.len() } else { 0 };
            if !items.is_empty() && bytes + size > limits.max_list_bytes {
                break;
            }
            bytes += size;
            items.push(ListItem {
                key: key.to_owned(),
                value: req.values.then(|| value.clone()),
            });
            iter.next();
        }
        ListResponse {
            items,
            more: iter.peek().is_some(),
        }
    }

    /// Answers a read (`Get` or `List`) from this map; `None` for any other request.
    pub fn read(&self, req: &Request, limits: &Limits) -> Option<Result<Response, ApiError>> {
        match req {
            Request::Get { key, .. } => Some(match self.get(key) {
                Some(value) => Ok(Response::Value(value.clone())),
                None => Err(ApiError::not_found(format!("key not found: {key:?}"))),
            }),
            Request::List(list) => Some(Ok(Response::List(self.list_page(list, limits)))),
            _ => None,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes of keys plus values.
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    /// Approximate memory held by the map: keys, values and a fixed overhead per entry.
    pub fn approx_size(&self) -> usize {
        self.data_bytes + self.map.len() * ENTRY_OVERHEAD
    }

    /// The whole map in the snapshot format (see the module docs).
    pub fn snapshot(&self) -> Bytes {
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER + self.data_bytes + 8 * self.len() + 8);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&[0; 4]);
        let mut out =
            postcard::to_extend(&self.map, out).expect("postcard encoding into a Vec cannot fail");
        let crc = crc32fast::hash(&out[SNAPSHOT_HEADER..]);
        out[5..SNAPSHOT_HEADER].copy_from_slice(&crc.to_le_bytes());
        Bytes::from(out)
    }

    /// Rebuilds a map from [`StateMachine::snapshot`] output.
    ///
    /// # Errors
    ///
    /// [`SnapshotError`] for a truncated, foreign, corrupted or malformed snapshot; never
    /// panics, whatever the input.
    pub fn restore(data: &[u8]) -> Result<StateMachine, SnapshotError> {
        if data.len() < SNAPSHOT_HEADER {
            return Err(SnapshotError::Truncated(data.len()));
        }
        if &data[..4] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        if data[4] != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(data[4]));
        }
        let stored = u32::from_le_bytes(data[5..SNAPSHOT_HEADER].try_into().expect("4 bytes"));
        let body = &data[SNAPSHOT_HEADER..];
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        let (map, rest): (BTreeMap<String, Bytes>, _) =
            postcard::take_from_bytes(body).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SnapshotError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        let data_bytes = map.iter().map(|(k, v)| k.len() + v.len()).sum();
        Ok(StateMachine { map, data_bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_owned())
    }

    fn put(key: &str, value: &str) -> Command {
        Command::Put {
            key: key.into(),
            value: b(value),
        }
    }

    fn put_if(key: &str, value: &str, condition: Condition) -> Command {
        Command::PutIf {
            key: key.into(),
            value: b(value),
            condition,
        }
    }

    fn keys(
        sm: &StateMachine,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<String>, bool) {
        let (items, more) = sm.list(prefix, after, limit);
        (items.into_iter().map(|(k, _)| k.to_owned()).collect(), more)
    }

    #[test]
    fn put_get_delete() {
        let mut sm = StateMachine::new();
        sm.apply(put("a", "1")).unwrap();
        sm.apply(put("a", "22")).unwrap();
        assert_eq!(sm.get("a"), Some(&b("22")));
        assert_eq!(sm.data_bytes(), 3);
        sm.apply(Command::Delete { key: "a".into() }).unwrap();
        assert_eq!(sm.get("a"), None);
        assert_eq!(sm.data_bytes(), 0);
        assert_eq!(
            sm.apply(Command::Delete { key: "a".into() }),
            Err(ApplyError::NotFound { key: "a".into() })
        );
        assert!(sm.is_empty());
    }

    #[test]
    fn compare_and_set() {
        let mut sm = StateMachine::new();
        let fail = |key: &str| Err(ApplyError::PreconditionFailed { key: key.into() });
        // An absent key fails prev_value and prev_exist=true, passes prev_exist=false.
        assert_eq!(
            sm.apply(put_if("k", "x", Condition::PrevValue(b("")))),
            fail("k")
        );
        assert_eq!(
            sm.apply(put_if("k", "x", Condition::PrevExist(true))),
            fail("k")
        );
        assert_eq!(sm.get("k"), None);
        sm.apply(put_if("k", "v1", Condition::PrevExist(false)))
            .unwrap();
        assert_eq!(
            sm.apply(put_if("k", "x", Condition::PrevExist(false))),
            fail("k")
        );
        assert_eq!(
            sm.apply(put_if("k", "x", Condition::PrevValue(b("v0")))),
            fail("k")
        );
        assert_eq!(sm.get("k"), Some(&b("v1")));
        sm.apply(put_if("k", "v2", Condition::PrevValue(b("v1"))))
            .unwrap();
        sm.apply(put_if("k", "v3", Condition::PrevExist(true)))
            .unwrap();
        assert_eq!(sm.get("k"), Some(&b("v3")));
        // The empty value is a value: prev_value="" matches it.
        sm.apply(put("e", "")).unwrap();
        sm.apply(put_if("e", "full", Condition::PrevValue(b(""))))
            .unwrap();
        assert_eq!(sm.get("e"), Some(&b("full")));
        let err: ApiError = ApplyError::PreconditionFailed { key: "k".into() }.into();
        assert_eq!(err.kind.http_status(), 412);
    }

    #[test]
    fn batch_applies_all_in_order() {
        let mut sm = StateMachine::new();
        sm.apply(put("b", "old")).unwrap();
        sm.apply(Command::Batch {
            items: vec![
                ("a".into(), b("1")),
                ("b".into(), b("2")),
                ("a".into(), b("3")),
            ],
        })
        .unwrap();
        assert_eq!(sm.get("a"), Some(&b("3")));
        assert_eq!(sm.get("b"), Some(&b("2")));
        assert_eq!(sm.len(), 2);
        assert_eq!(sm.data_bytes(), 4);
    }

    #[test]
    fn failed_command_changes_nothing() {
        let mut sm = StateMachine::new();
        sm.apply(put("k", "v")).unwrap();
        let before = sm.clone();
        let _ = sm.apply(put_if("k", "x", Condition::PrevExist(false)));
        let _ = sm.apply(put_if("k", "x", Condition::PrevValue(b("w"))));
        let _ = sm.apply(Command::Delete { key: "nope".into() });
        assert_eq!(sm, before);
    }

    #[test]
    fn list_order_prefix_after_limit() {
        let mut sm = StateMachine::new();
        for k in ["b", "a/2", "a/1", "a", "a/10", "c", "ab"] {
            sm.apply(put(k, k)).unwrap();
        }
        let all = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            keys(&sm, "", None, 100),
            (all(&["a", "a/1", "a/10", "a/2", "ab", "b", "c"]), false)
        );
        assert_eq!(
            keys(&sm, "a/", None, 100),
            (all(&["a/1", "a/10", "a/2"]), false)
        );
        assert_eq!(keys(&sm, "a/", None, 2), (all(&["a/1", "a/10"]), true));
        assert_eq!(keys(&sm, "a/", Some("a/10"), 2), (all(&["a/2"]), false));
        // `after` below the prefix starts at the prefix; above every match yields nothing.
        assert_eq!(keys(&sm, "a/", Some("0"), 1), (all(&["a/1"]), true));
        assert_eq!(keys(&sm, "a/", Some("a/2"), 5), (vec![], false));
        assert_eq!(keys(&sm, "a/", Some("zzz"), 5), (vec![], false));
        assert_eq!(keys(&sm, "", Some("ab"), 5), (all(&["b", "c"]), false));
        assert_eq!(keys(&sm, "", None, 0), (vec![], true));
        assert_eq!(keys(&sm, "x", None, 0), (vec![], false));
        assert_eq!(keys(&sm, "c", None, 1), (all(&["c"]), false));
    }

    #[test]
    fn list_page_limits() {
        let mut sm = StateMachine::new();
        for i in 0..10 {
            sm.apply(put(&format!("k{i}"), "0123456789")).unwrap();
        }
        let limits = Limits {
            max_list: 4,
            max_list_bytes: 30,
            ..Limits::default()
        };
        let page = |values: bool, limit: Option<u32>| {
            sm.list_page(
                &ListRequest {
                    values,
                    limit,
                    ..ListRequest::default()
                },
                &limits,
            )
        };
        let p = page(false, None);
        assert_eq!(p.items.len(), 4);
        assert!(p.more);
        assert!(p.items.iter().all(|i| i.value.is_none()));
        assert_eq!(page(false, Some(100)).items.len(), 4);
        // With values each item is 12 bytes: two fit in 30.
        let p = page(true, None);
        assert_eq!(p.items.len(), 2);
        assert!(p.more);
        assert_eq!(p.items[0].value, Some(b("0123456789")));
        // A single item larger than the budget is still returned.
        let tiny = Limits {
            max_list_bytes: 1,
            ..limits
        };
        let p = sm.list_page(
            &ListRequest {
                values: true,
                ..ListRequest::default()
            },
            &tiny,
        );
        assert_eq!(p.items.len(), 1);
        assert!(p.more);
    }

    #[test]
    fn read_answers_get_and_list_only() {
        let mut sm = StateMachine::new();
        sm.apply(put("k", "v")).unwrap();
        let limits = Limits::default();
        let get = |key: &str| Request::Get {
            key: key.into(),
            consistency: Default::default(),
        };
        assert_eq!(
            sm.read(&get("k"), &limits),
            Some(Ok(Response::Value(b("v"))))
        );
        assert_eq!(
            sm.read(&get("x"), &limits)
                .unwrap()
                .unwrap_err()
                .kind
                .http_status(),
            404
        );
        assert!(sm.read(&Request::Members, &limits).is_none());
    }

    #[test]
    fn command_round_trip_and_tags() {
        let cmds = [
            put("k", "v"),
            put_if("k", "v", Condition::PrevValue(b("old"))),
            put_if("k", "v", Condition::PrevExist(false)),
            Command::Delete { key: "k".into() },
            Command::Batch {
                items: vec![("a".into(), b("1")), ("b".into(), Bytes::new())],
            },
        ];
        for cmd in cmds {
            let data = cmd.encode();
            assert_eq!(data[0], TAG_COMMAND);
            assert_eq!(Command::decode(&data).unwrap(), cmd);
            let prop = Proposal {
                id: u64::MAX - 7,
                command: cmd.clone(),
            };
            let pdata = prop.encode();
            assert_eq!(Proposal::decode(&pdata).unwrap(), prop);
            // The tags keep the two formats apart.
            assert!(matches!(
                Command::decode(&pdata),
                Err(DecodeError::UnknownTag(2))
            ));
            assert!(matches!(
                Proposal::decode(&data),
                Err(DecodeError::UnknownTag(1))
            ));
            let mut long = data.to_vec();
            long.push(0);
            assert!(matches!(
                Command::decode(&long),
                Err(DecodeError::TrailingBytes(1))
            ));
        }
        assert!(matches!(Command::decode(&[]), Err(DecodeError::Empty)));
    }

    #[test]
    fn snapshot_round_trip() {
        let mut sm = StateMachine::new();
        assert_eq!(StateMachine::restore(&sm.snapshot()).unwrap(), sm);
        for i in 0..100 {
            sm.apply(put(&format!("key/{i:03}"), &"x".repeat(i)))
                .unwrap();
        }
        sm.apply(Command::Put {
            key: "bin".into(),
            value: Bytes::from_static(&[0, 255, 1]),
        })
        .unwrap();
        let restored = StateMachine::restore(&sm.snapshot()).unwrap();
        assert_eq!(restored, sm);
        assert_eq!(restored.data_bytes(), sm.data_bytes());
    }

    #[test]
    fn restore_rejects_damage() {
        let mut sm = StateMachine::new();
        sm.apply(put("k", "v")).unwrap();
        let snap = sm.snapshot();
        assert!(matches!(
            StateMachine::restore(&snap[..5]),
            Err(SnapshotError::Truncated(5))
        ));
        assert!(matches!(
            StateMachine::restore(b"not a snapshot"),
            Err(SnapshotError::BadMagic)
        ));
        let mut bad = snap.to_vec();
        bad[4] = 9;
        assert!(matches!(
            StateMachine::restore(&bad),
            Err(SnapshotError::UnsupportedVersion(9))
        ));
        for i in SNAPSHOT_HEADER..snap.len() {
            let mut bad = snap.to_vec();
            bad[i] ^= 0x40;
            assert!(matches!(
                StateMachine::restore(&bad),
                Err(SnapshotError::Checksum { .. })
            ));
        }
        let mut cut = snap.to_vec();
        cut.pop();
        assert!(StateMachine::restore(&cut).is_err());
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        let key = "[a-c]{1,3}";
        let value = proptest::collection::vec(any::<u8>(), 0..4).prop_map(Bytes::from);
        prop_oneof![
            (key, value.clone()).prop_map(|(key, value)| Command::Put { key, value }),
            (key, value.clone(), value.clone(), any::<Option<bool>>()).prop_map(
                |(key, value, prev, exist)| Command::PutIf {
                    key,
                    value,
                    condition: match exist {
                        Some(e) => Condition::PrevExist(e),
                        None => Condition::PrevValue(prev),
                    },
                }
            ),
            key.prop_map(|key| Command::Delete { key }),
            proptest::collection::vec((key, value), 0..4)
                .prop_map(|items| Command::Batch { items }),
        ]
    }

    proptest! {
        #[test]
        fn decode_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Command::decode(&data);
            let _ = Proposal::decode(&data);
            let _ = StateMachine::restore(&data);
            let mut tagged = vec![TAG_COMMAND];
            tagged.extend_from_slice(&data);
            let _ = Command::decode(&tagged);
        }

        #[test]
        fn matches_a_naive_model(cmds in proptest::collection::vec(arb_command(), 0..40),
                                 prefix in "[a-c]{0,2}", after in proptest::option::of("[a-c]{0,3}"),
                                 limit in 0usize..6) {
            let mut sm = StateMachine::new();
            let mut model: Vec<(String, Bytes)> = Vec::new();
            for cmd in cmds {
                let cmd = Command::decode(&cmd.encode()).unwrap();
                let pos = |m: &Vec<(String, Bytes)>, k: &str| m.iter().position(|(mk, _)| mk == k);
                let expect_ok = match &cmd {
                    Command::Put { .. } | Command::Batch { .. } => true,
                    Command::PutIf { key, condition, .. } => match (condition, pos(&model, key)) {
                        (Condition::PrevExist(e), p) => p.is_some() == *e,
                        (Condition::PrevValue(v), Some(p)) => model[p].1 == v,
                        (Condition::PrevValue(_), None) => false,
                    },
                    Command::Delete { key } => pos(&model, key).is_some(),
                };
                let outcome = sm.apply(cmd.clone());
                prop_assert_eq!(outcome.is_ok(), expect_ok);
                if expect_ok {
                    let pairs = match cmd {
                        Command::Put { key, value } | Command::PutIf { key, value, .. } => vec![(key, Some(value))],
                        Command::Delete { key } => vec![(key, None)],
                        Command::Batch { items } => items.into_iter().map(|(k, v)| (k, Some(v))).collect(),
                    };
                    for (k, v) in pairs {
                        if let Some(p) = pos(&model, &k) { model.remove(p); }
                        if let Some(v) = v { model.push((k, v)); }
                    }
                }
            }
            model.sort();
            prop_assert_eq!(sm.len(), model.len());
            prop_assert_eq!(sm.data_bytes(), model.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
            let matching: Vec<_> = model
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix) && after.as_ref().is_none_or(|a| k > a))
                .collect();
            let (items, more) = sm.list(&prefix, after.as_deref(), limit);
            let got: Vec<_> = items.iter().map(|(k, v)| (k.to_string(), (*v).clone())).collect();
            let want: Vec<_> = matching.iter().take(limit).map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(more, matching.len() > limit);
            prop_assert_eq!(StateMachine::restore(&sm.snapshot()).unwrap(), sm);
        }
    }
}
