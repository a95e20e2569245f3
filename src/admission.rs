//! Connection admission: which new TCP connections the gateway serves.
//!
//! The accept loop asks [`Admission::connect`] about every new connection and
//! reports back with [`Admission::authenticated`] and [`Admission::closed`].
//! From that, this module decides three things:
//!
//! * **Penalties** (the model of OpenSSH 9.8's `PerSourcePenalties`): every
//!   connection that closes after failing to authenticate adds
//!   `penalty_per_failure` to its source's penalty, capped at `penalty_max`.
//!   The penalty runs down with time; while more than `penalty_threshold` of
//!   it is left, new connections from that source are refused with
//!   [`Refusal::Penalised`]. Sources in `exempt` are never penalised.
//! * **Per-source slots**: a source may hold at most
//!   `max_unauthenticated_per_source` connections that have not logged in
//!   yet; one more is refused with [`Refusal::PerSource`].
//! * **Total slots**: at most `max_unauthenticated` connections may be waiting
//!   to log in. When they are all taken the newcomer is *not* refused (a flood
//!   must not lock out a real user): the oldest waiting connection of the
//!   source holding the most slots is evicted instead, and its ticket is
//!   handed back in [`Admit::Accept::evict`].
//!
//! A "source" is an IPv4 address or an IPv6 /64; an IPv4-mapped IPv6 address
//! is the IPv4 address it maps.
//!
//! Guarantees:
//!
//! * bounded memory: the slots held never exceed `max_unauthenticated`, and the
//!   penalty table never holds more than `max_penalised_sources` entries (when
//!   it is full, the entry that expires first is dropped; expired entries are
//!   forgotten lazily);
//! * every call is O(log n) (amortised, for the lazy expiry of penalties): no
//!   call scans all connections or all penalised sources (only `closed` after
//!   a failure walks the short `exempt` list);
//! * no I/O, no clock: the caller passes `now`, and nothing here panics.
//!
//! What it does not do: it does not close sockets, nor time out slow logins.
//! When `connect` names a ticket to evict, the caller disconnects that
//! connection; its slot is already free, and later reports about it are
//! ignored. The caller serialises access (for example with a `Mutex`).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Limits for [`Admission`].
#[derive(Debug, Clone)]
pub struct AdmissionLimits {
    /// Connections not yet logged in, in total (default 512). 0 is treated as
    /// 1: a gateway that admits no connection at all is not useful.
    pub max_unauthenticated: usize,
    /// Connections not yet logged in, per source: an IPv4 address or an IPv6
    /// /64 (default 32). 0 is treated as 1.
    pub max_unauthenticated_per_source: usize,
    /// Penalty added for each connection that closed after failing to
    /// authenticate (default 5 s).
    pub penalty_per_failure: Duration,
    /// Cap on a source's accrued penalty (default 10 min).
    pub penalty_max: Duration,
    /// A source is refused while its accrued penalty exceeds this (default 15 s).
    pub penalty_threshold: Duration,
    /// Bound on the penalty table (default 65536); when it is full, the entry
    /// that expires first is dropped. 0 turns penalties off.
    pub max_penalised_sources: usize,
    /// Sources never penalised (they still count for slots). A network of
    /// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d/n`, n ≥ 96) also covers
    /// the IPv4 addresses it maps.
    pub exempt: Vec<ipnet::IpNet>,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        AdmissionLimits {
            max_unauthenticated: 512,
            max_unauthenticated_per_source: 32,
            penalty_per_failure: Duration::from_secs(5),
            penalty_max: Duration::from_secs(600),
            penalty_threshold: Duration::from_secs(15),
            max_penalised_sources: 65536,
            exempt: Vec::new(),
        }
    }
}

/// Names one admitted connection. Unique and increasing.
pub type Ticket = u64;

/// The answer to [`Admission::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Serve it. If `evict` is set, the caller must disconnect that older
    /// unauthenticated connection to make room.
    Accept {
        ticket: Ticket,
        evict: Option<Ticket>,
    },
    /// Do not serve it.
    Refuse(Refusal),
}

/// Why a connection was refused. `source` is the source as this module counts
/// it: an IPv4 address, or an IPv6 network like `2001:db8::/64`.
///
/// `Display` and `Error` are written by hand: `thiserror` would take a field
/// named `source` for the underlying error, which a `String` cannot be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The source already holds its share of unauthenticated slots.
    PerSource { source: String, limit: usize },
    /// The source failed to authenticate too often.
    Penalised {
        source: String,
        retry_after_secs: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::PerSource { source, limit } => {
                write!(
                    f,
                    "too many connections from {source} waiting to log in ({limit})"
                )
            }
            Refusal::Penalised {
                source,
                retry_after_secs,
            } => write!(
                f,
                "{source} failed to authenticate too often; try again in {retry_after_secs} s"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// A source as counted: an IPv4 address, or the upper 64 bits of an IPv6
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Bucket {
    V4(Ipv4Addr),
    V6(u64),
}

impl Bucket {
    fn of(ip: IpAddr) -> Bucket {
        match ip.to_canonical() {
            IpAddr::V4(a) => Bucket::V4(a),
            IpAddr::V6(a) => Bucket::V6((u128::from(a) >> 64) as u64),
        }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bucket::V4(a) => write!(f, "{a}"),
            Bucket::V6(prefix) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*prefix) << 64)),
        }
    }
}

/// Order of eviction: the source with the most slots first, then the one
/// whose oldest connection is oldest. The bucket only keeps keys distinct.
type Rank = (Reverse<usize>, Ticket, Bucket);

fn rank_of(bucket: Bucket, tickets: &BTreeSet<Ticket>) -> Option<Rank> {
    tickets
        .first()
        .map(|&oldest| (Reverse(tickets.len()), oldest, bucket))
}

/// Admission state. See the module documentation.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    /// `limits.max_unauthenticated`, at least 1.
    max_unauthenticated: usize,
    /// `limits.max_unauthenticated_per_source`, at least 1.
    max_per_source: usize,
    next_ticket: Ticket,
    /// Connections holding an unauthenticated slot, with their address.
    /// Authenticated, closed and evicted connections are not kept.
    slots: HashMap<Ticket, IpAddr>,
    /// The slots of each source, oldest first. No empty sets.
    sources: HashMap<Bucket, BTreeSet<Ticket>>,
    /// One entry per key of `sources`, see [`Rank`].
    ranking: BTreeSet<Rank>,
    /// When each penalised source's penalty runs out.
    penalties: HashMap<Bucket, Instant>,
    /// The same entries as `penalties`, the first to expire first.
    expiries: BTreeSet<(Instant, Bucket)>,
}

impl Admission {
    pub fn new(mut limits: AdmissionLimits) -> Admission {
        // An IPv4-mapped IPv6 network is matched as the IPv4 network it maps.
        for net in &mut limits.exempt {
            if let ipnet::IpNet::V6(v6) = net
                && let Some(v4) = v6.network().to_ipv4_mapped()
                && let Some(len) = v6.prefix_len().checked_sub(96)
                && let Ok(v4net) = ipnet::Ipv4Net::new(v4, len)
            {
                *net = ipnet::IpNet::V4(v4net);
            }
        }
        Admission {
            max_unauthenticated: limits.max_unauthenticated.max(1),
            max_per_source: limits.max_unauthenticated_per_source.max(1),
            limits,
            next_ticket: 1,
            slots: HashMap::new(),
            sources: HashMap::new(),
            ranking: BTreeSet::new(),
            penalties: HashMap::new(),
            expiries: BTreeSet::new(),
        }
    }

    /// Decides about a new connection from `source`.
    pub fn connect(&mut self, source: IpAddr, now: Instant) -> Admit {
        let bucket = Bucket::of(source);
        self.expire(now);
        if let Some(left) = self.penalty_of(bucket, now)
            && left > self.limits.penalty_threshold
        {
            let over = left.saturating_sub(self.limits.penalty_threshold);
            let secs = over
                .as_secs()
                .saturating_add(u64::from(over.subsec_nanos() > 0));
            return Admit::Refuse(Refusal::Penalised {
                source: bucket.to_string(),
                retry_after_secs: secs.max(1),
            });
        }
        if self.held_by(bucket) >= self.max_per_source {
            return Admit::Refuse(Refusal::PerSource {
                source: bucket.to_string(),
                limit: self.max_per_source,
            });
        }
        let evict = if self.slots.len() >= self.max_unauthenticated {
            self.evict_one()
        } else {
            None
        };
        let ticket = self.next_ticket;
        // 2^64 connections never happen; wrapping only avoids a panic path.
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.take_slot(source, bucket, ticket);
        Admit::Accept { ticket, evict }
    }

    /// The connection logged in: frees its unauthenticated slot. Idempotent;
    /// unknown (closed, evicted) tickets are ignored.
    pub fn authenticated(&mut self, ticket: Ticket) {
        self.free_slot(ticket);
    }

    /// The connection closed. Frees its slot if it still holds one and, if
    /// `failed_auth` and its source is not exempt, adds a penalty. A
    /// connection that had logged in, or was evicted, is ignored.
    pub fn closed(&mut self, ticket: Ticket, failed_auth: bool, now: Instant) {
        let Some(ip) = self.free_slot(ticket) else {
            return;
        };
        if failed_auth && !self.is_exempt(ip) {
            self.expire(now);
            self.penalise(Bucket::of(ip), now);
        }
    }

    /// Connections holding an unauthenticated slot, in total.
    pub fn unauthenticated(&self) -> usize {
        self.slots.len()
    }

    /// Connections holding an unauthenticated slot from `source`'s bucket (its
    /// IPv4 address or IPv6 /64).
    pub fn unauthenticated_from(&self, source: IpAddr) -> usize {
        self.held_by(Bucket::of(source))
    }

    /// The accrued penalty `source` has left at `now`, if any.
    pub fn penalty(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        self.penalty_of(Bucket::of(source), now)
    }

    fn held_by(&self, bucket: Bucket) -> usize {
        self.sources.get(&bucket).map_or(0, BTreeSet::len)
    }

    fn penalty_of(&self, bucket: Bucket, now: Instant) -> Option<Duration> {
        self.penalties
            .get(&bucket)
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    fn is_exempt(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.limits
            .exempt
            .iter()
            .any(|net| net.contains(&canonical) || net.contains(&ip))
    }

    fn take_slot(&mut self, ip: IpAddr, bucket: Bucket, ticket: Ticket) {
        let tickets = self.sources.entry(bucket).or_default();
        if let Some(old) = rank_of(bucket, tickets) {
            self.ranking.remove(&old);
        }
        tickets.insert(ticket);
        if let Some(new) = rank_of(bucket, tickets) {
            self.ranking.insert(new);
        }
        self.slots.insert(ticket, ip);
    }

    /// Frees `ticket`'s slot; returns its address if it held one.
    fn free_slot(&mut self, ticket: Ticket) -> Option<IpAddr> {
        let ip = self.slots.remove(&ticket)?;
        let bucket = Bucket::of(ip);
        if let Some(tickets) = self.sources.get_mut(&bucket) {
            if let Some(old) = rank_of(bucket, tickets) {
                self.ranking.remove(&old);
            }
            tickets.remove(&ticket);
            match rank_of(bucket, tickets) {
                Some(new) => {
                    self.ranking.insert(new);
                }
                None => {
                    self.sources.remove(&bucket);
                }
            }
        }
        Some(ip)
    }

    /// Frees the slot of the oldest connection of the biggest source.
    fn evict_one(&mut self) -> Option<Ticket> {
        let &(_, victim, _) = self.ranking.first()?;
        self.free_slot(victim).map(|_| victim)
    }

    /// Forgets penalties that have run out by `now`.
    fn expire(&mut self, now: Instant) {
        while let Some(&(until, bucket)) = self.expiries.first() {
            if until > now {
                break;
            }
            self.expiries.pop_first();
            self.penalties.remove(&bucket);
        }
    }

    fn penalise(&mut self, bucket: Bucket, now: Instant) {
        let max_entries = self.limits.max_penalised_sources;
        if max_entries == 0 {
            return;
        }
        let current = self.penalties.get(&bucket).copied();
        let base = current.map_or(now, |until| until.max(now));
        let raised = base.checked_add(self.limits.penalty_per_failure);
        let cap = now.checked_add(self.limits.penalty_max);
        let until = match (raised, cap) {
            (Some(raised), Some(cap)) => raised.min(cap),
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => base,
        };
        if until <= now {
            return; // a zero penalty: nothing to remember
        }
        match current {
            Some(old) => {
                self.expiries.remove(&(old, bucket));
            }
            None => {
                while self.penalties.len() >= max_entries {
                    let Some((_, dropped)) = self.expiries.pop_first() else {
                        break;
                    };
                    self.penalties.remove(&dropped);
                }
            }
        }
        self.penalties.insert(bucket, until);
        self.expiries.insert((until, bucket));
    }
}

#[cfg(test)]
#[path = "admission_model_tests.rs"]
mod model_tests;
#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
