//! The audit chain: what an audit entry records and how entries are hash-chained per org
//! (AU-2, AU-3). Storage appends and reads entries; the arithmetic of the chain lives here so
//! that it can be tested without a database and reused by an offline verifier.
//!
//! `hash = SHA-256(domain tag || previous hash || each field, length-prefixed)`. Length
//! prefixes make the encoding unambiguous (`"ab" + "c"` never hashes like `"a" + "bc"`), and
//! `details` is hashed as canonical JSON (keys sorted at every level), because PostgreSQL's
//! `jsonb` does not keep the order in which keys were written.

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::ids::{AuditEventId, OrgId};

/// The hash before the first entry of every chain.
pub const GENESIS_HASH: ChainHash = ChainHash([0; 32]);

const DOMAIN_TAG: &[u8] = b"portcullis.audit.v1\0";

/// A SHA-256 link of an audit chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The hash as 64 lowercase hexadecimal digits, as reports print it and heads are recorded.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the 64 hex digits that `to_hex` prints.
    pub fn from_hex(text: &str) -> Result<Self, InvalidChainHash> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| InvalidChainHash)?;
        Ok(Self(bytes))
    }

    /// The hash from the 32 bytes PostgreSQL stores; any other length is refused.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidChainHash> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| InvalidChainHash)
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A text or byte string that is not a chain hash.
#[derive(Debug, thiserror::Error)]
#[error("a chain hash is 64 hexadecimal digits (32 bytes)")]
pub struct InvalidChainHash;

/// Who acted. Every audit entry names one (AU-2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Actor {
    /// What kind of credential or process acted.
    pub kind: ActorKind,
    /// The user id, key id, or for `System` the name of the job or command.
    pub id: String,
}

/// The kinds of actor, as stored in `actor_type` and hashed into the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// A person, signed in with a session.
    User,
    /// The platform operator's master key.
    MasterKey,
    /// A virtual key of the data plane.
    VirtualKey,
    /// A job or command of Portcullis itself, such as `bootstrap` or `kek-rotate`.
    System,
}

impl ActorKind {
    /// Every kind, in one place, so that `parse` cannot miss one.
    pub const ALL: [ActorKind; 4] = [
        ActorKind::User,
        ActorKind::MasterKey,
        ActorKind::VirtualKey,
        ActorKind::System,
    ];

    /// The stored name. It is hashed into every entry, so changing one breaks existing chains.
    pub const fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::MasterKey => "master_key",
            ActorKind::VirtualKey => "virtual_key",
            ActorKind::System => "system",
        }
    }

    /// The kind a stored name stands for; `None` for a name that no kind has.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl Actor {
    /// The actor of a Portcullis job or command, with `job` as its id.
    pub fn system(job: &str) -> Self {
        Self {
            kind: ActorKind::System,
            id: job.to_owned(),
        }
    }
}

/// Where an action came from: one extractor fills it for every route (AU-2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// The socket peer, or behind a trusted proxy the nearest untrusted `X-Forwarded-For` hop.
    pub client_ip: Option<IpAddr>,
    /// The client's `User-Agent` header, cut to a bounded length.
    pub user_agent: Option<String>,
    /// The `x-request-id` that ties the entry to the request's logs and traces.
    pub request_id: Option<String>,
}

/// One audit entry as it is hashed and stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    /// The org whose chain holds the entry: each org has a chain of its own.
    pub org_id: OrgId,
    /// Position in the org's chain, starting at 1 with no gaps.
    pub seq: i64,
    /// The entry's own UUIDv7.
    pub id: AuditEventId,
    /// Microsecond precision, as PostgreSQL stores it.
    pub occurred_at: DateTime<Utc>,
    /// The person, key or job that acted.
    pub actor: Actor,
    /// A dotted verb such as `org.created` or `member.role_changed`.
    pub action: String,
    /// What the action was done to, such as `user`, `key`, `route` or `org`.
    pub target_type: String,
    /// Which one: its id or name, as text.
    pub target_id: String,
    /// Where the request came from; empty for jobs and commands.
    pub source: Source,
    /// Non-secret facts about the change. Never a secret, password or prompt.
    pub details: Value,
}

/// A stored entry with its links.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainedRecord {
    /// The entry as it was hashed.
    pub record: AuditRecord,
    /// The hash of the entry before it, or [`GENESIS_HASH`] for the first.
    pub prev_hash: ChainHash,
    /// The [`chain_hash`] of `record` after `prev_hash`, as stored.
    pub hash: ChainHash,
}

/// Truncates a time to the microsecond precision of PostgreSQL's `timestamptz`, so that the
/// hash computed before the insert matches the one recomputed from the stored row.
pub fn to_stored_precision(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(time.timestamp_micros()).unwrap_or(time)
}

/// The hash that links `record` after `prev`.
pub fn chain_hash(prev: &ChainHash, record: &AuditRecord) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN_TAG);
    hasher.update(prev.0);
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(record.org_id.as_uuid().as_bytes());
    field(&record.seq.to_be_bytes());
    field(record.id.as_uuid().as_bytes());
    field(&record.occurred_at.timestamp_micros().to_be_bytes());
    field(record.actor.kind.as_str().as_bytes());
    field(record.actor.id.as_bytes());
    field(record.action.as_bytes());
    field(record.target_type.as_bytes());
    field(record.target_id.as_bytes());
    match record.source.client_ip {
        None => field(b""),
        Some(IpAddr::V4(ip)) => field(&ip.octets()),
        Some(IpAddr::V6(ip)) => field(&ip.octets()),
    }
    field(optional(&record.source.user_agent));
    field(optional(&record.source.request_id));
    let mut details = Vec::new();
    write_canonical_json(&record.details, &mut details);
    field(&details);
    ChainHash(hasher.finalize().into())
}

fn optional(value: &Option<String>) -> &[u8] {
    value.as_deref().map_or(b"".as_slice(), str::as_bytes)
}

/// JSON with object keys sorted at every level and no insignificant whitespace. Scalars are
/// written by serde_json, so escaping follows the JSON specification exactly.
fn write_canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical_json(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical_json(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

/// Where and why a chain stopped verifying.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The next entry is not at the next position: one was removed or reordered.
    #[error(
        "entry {found} found where entry {expected} was expected: an entry was removed or reordered"
    )]
    Gap {
        /// The position the entry should hold.
        expected: i64,
        /// The position it holds.
        found: i64,
    },
    /// The entry's `prev_hash` is not the hash of the entry before it.
    #[error("entry {seq} does not link to the entry before it: an entry was removed or reordered")]
    BrokenLink {
        /// The position of the entry that does not link.
        seq: i64,
    },
    /// The entry no longer matches its own hash.
    #[error("entry {seq} does not match its hash: it was edited")]
    Edited {
        /// The position of the edited entry.
        seq: i64,
    },
    /// The entry belongs to another org's chain.
    #[error("entry {seq} belongs to another org's chain")]
    ForeignEntry {
        /// The position the foreign entry claims.
        seq: i64,
    },
    /// A recorded head is not in the chain: another entry holds its place, or the chain ends first.
    #[error(
        "the recorded head (entry {seq}, {expected}) is not in the chain: entries were removed"
    )]
    HeadMissing {
        /// The recorded head's position.
        seq: i64,
        /// The hash recorded for it.
        expected: ChainHash,
    },
}

/// A head hash recorded earlier (kept outside the database) that the chain must still contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownHead {
    /// The entry's position in its org's chain.
    pub seq: i64,
    /// The entry's hash, as it was when recorded.
    pub hash: ChainHash,
}

/// The result of a successful verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainSummary {
    /// How many entries were checked, from the first.
    pub events_checked: u64,
    /// The last entry's position and hash, or `None` for an empty chain.
    pub head: Option<KnownHead>,
}

/// Walks one org's chain in order, entry by entry, so that arbitrarily long chains verify in
/// constant memory.
#[derive(Debug)]
pub struct ChainVerifier {
    org_id: OrgId,
    known_head: Option<KnownHead>,
    known_head_seen: bool,
    checked: u64,
    head: Option<KnownHead>,
}

impl ChainVerifier {
    /// A verifier for `org_id`'s chain; with `known_head`, the chain must still contain that entry.
    pub fn new(org_id: OrgId, known_head: Option<KnownHead>) -> Self {
        Self {
            org_id,
            known_head,
            known_head_seen: false,
            checked: 0,
            head: None,
        }
    }

    /// Checks the next entry; entries must be fed in ascending `seq` order.
    pub fn push(&mut self, entry: &ChainedRecord) -> Result<(), ChainBreak> {
        let seq = entry.record.seq;
        let expected_seq = self.head.map_or(1, |head| head.seq + 1);
        if entry.record.org_id != self.org_id {
            return Err(ChainBreak::ForeignEntry { seq });
        }
        if seq != expected_seq {
            return Err(ChainBreak::Gap {
                expected: expected_seq,
                found: seq,
            });
        }
        let prev = self.head.map_or(GENESIS_HASH, |head| head.hash);
        if entry.prev_hash != prev {
            return Err(ChainBreak::BrokenLink { seq });
        }
        if chain_hash(&prev, &entry.record) != entry.hash {
            return Err(ChainBreak::Edited { seq });
        }
        if let Some(known) = self.known_head
            && known.seq == seq
        {
            if known.hash != entry.hash {
                return Err(ChainBreak::HeadMissing {
                    seq,
                    expected: known.hash,
                });
            }
            self.known_head_seen = true;
        }
        self.checked += 1;
        self.head = Some(KnownHead {
            seq,
            hash: entry.hash,
        });
        Ok(())
    }

    /// Ends the walk: fails if a recorded head was never reached (the tail was cut).
    pub fn finish(self) -> Result<ChainSummary, ChainBreak> {
        if let Some(known) = self.known_head
            && !self.known_head_seen
        {
            return Err(ChainBreak::HeadMissing {
                seq: known.seq,
                expected: known.hash,
            });
        }
        Ok(ChainSummary {
            events_checked: self.checked,
            head: self.head,
        })
    }
}

/// Verifies a whole chain held in memory.
pub fn verify_chain<'a>(
    org_id: OrgId,
    entries: impl IntoIterator<Item = &'a ChainedRecord>,
    known_head: Option<KnownHead>,
) -> Result<ChainSummary, ChainBreak> {
    let mut verifier = ChainVerifier::new(org_id, known_head);
    for entry in entries {
        verifier.push(entry)?;
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn record(org_id: OrgId, seq: i64, action: &str) -> AuditRecord {
        AuditRecord {
            org_id,
            seq,
            id: AuditEventId::new(),
            occurred_at: to_stored_precision(Utc::now()),
            actor: Actor::system("test"),
            action: action.to_owned(),
            target_type: "org".to_owned(),
            target_id: org_id.to_string(),
            source: Source {
                client_ip: Some("192.0.2.7".parse().unwrap()),
                user_agent: Some("test-agent".to_owned()),
                request_id: Some(format!("req-{seq}")),
            },
            details: json!({"b": 1, "a": {"y": [1, 2], "x": "z"}}),
        }
    }

    fn chain(org_id: OrgId, len: i64) -> Vec<ChainedRecord> {
        let mut prev = GENESIS_HASH;
        (1..=len)
            .map(|seq| {
                let record = record(org_id, seq, &format!("action.{seq}"));
                let hash = chain_hash(&prev, &record);
                let entry = ChainedRecord {
                    record,
                    prev_hash: prev,
                    hash,
                };
                prev = hash;
                entry
            })
            .collect()
    }

    #[test]
    fn au_3_an_intact_chain_verifies_and_reports_its_head() {
        let org = OrgId::new();
        let entries = chain(org, 5);
        let summary = verify_chain(org, &entries, None).unwrap();
        assert_eq!(summary.events_checked, 5);
        assert_eq!(summary.head.unwrap().hash, entries[4].hash);
        let known = KnownHead {
            seq: 3,
            hash: entries[2].hash,
        };
        assert!(verify_chain(org, &entries, Some(known)).is_ok());
    }

    #[test]
    fn au_3_details_hash_the_same_whatever_the_key_order() {
        let org = OrgId::new();
        let mut a = record(org, 1, "x");
        let mut b = a.clone();
        a.details = json!({"first": 1, "second": {"p": 1, "q": 2}});
        b.details = serde_json::from_str(r#"{"second": {"q": 2, "p": 1}, "first": 1}"#).unwrap();
        assert_eq!(chain_hash(&GENESIS_HASH, &a), chain_hash(&GENESIS_HASH, &b));
    }

    #[test]
    fn au_3_field_boundaries_cannot_be_shifted() {
        let org = OrgId::new();
        let mut a = record(org, 1, "x");
        a.target_type = "ab".to_owned();
        a.target_id = "c".to_owned();
        let mut b = a.clone();
        b.target_type = "a".to_owned();
        b.target_id = "bc".to_owned();
        assert_ne!(chain_hash(&GENESIS_HASH, &a), chain_hash(&GENESIS_HASH, &b));
    }

    #[test]
    fn au_3_a_cut_tail_is_found_only_with_the_recorded_head() {
        let org = OrgId::new();
        let mut entries = chain(org, 6);
        let known = KnownHead {
            seq: 6,
            hash: entries[5].hash,
        };
        entries.truncate(4);
        assert!(verify_chain(org, &entries, None).is_ok());
        assert_eq!(
            verify_chain(org, &entries, Some(known)),
            Err(ChainBreak::HeadMissing {
                seq: 6,
                expected: known.hash
            })
        );
    }

    #[test]
    fn au_3_an_entry_from_another_org_is_refused() {
        let org = OrgId::new();
        let entries = chain(OrgId::new(), 1);
        assert_eq!(
            verify_chain(org, &entries, None),
            Err(ChainBreak::ForeignEntry { seq: 1 })
        );
    }

    #[test]
    fn chain_hash_parses_back_from_hex() {
        let hash = chain_hash(&GENESIS_HASH, &record(OrgId::new(), 1, "x"));
        assert_eq!(ChainHash::from_hex(&hash.to_hex()).unwrap(), hash);
        assert!(ChainHash::from_hex("abc").is_err());
    }

    proptest! {
        /// Any single edit, removal or swap anywhere in a chain is detected.
        #[test]
        fn au_3_any_tampering_is_detected(len in 2i64..12, at in 0usize..12, how in 0u8..4) {
            let org = OrgId::new();
            let mut entries = chain(org, len);
            let at = at % entries.len();
            match how {
                0 => entries[at].record.action.push('!'),
                1 => entries[at].record.details = json!({"changed": true}),
                2 => {
                    let next = (at + 1) % entries.len();
                    entries.swap(at, next);
                }
                _ => {
                    // Removal of a non-final entry; a removed tail needs a known head.
                    let at = at % (entries.len() - 1);
                    entries.remove(at);
                }
            }
            prop_assert!(verify_chain(org, &entries, None).is_err());
        }
    }
}
