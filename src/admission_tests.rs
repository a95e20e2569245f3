//! Unit tests of connection admission: slots, eviction, penalties, sources.

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

pub(super) fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

pub(super) fn v6(text: &str) -> IpAddr {
    IpAddr::V6(text.parse::<Ipv6Addr>().expect("test address"))
}

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn limits(total: usize, per_source: usize) -> AdmissionLimits {
    AdmissionLimits {
        max_unauthenticated: total,
        max_unauthenticated_per_source: per_source,
        ..AdmissionLimits::default()
    }
}

pub(super) fn accept(admit: Admit) -> (Ticket, Option<Ticket>) {
    match admit {
        Admit::Accept { ticket, evict } => (ticket, evict),
        Admit::Refuse(refusal) => panic!("refused: {refusal}"),
    }
}

pub(super) fn ticket(admit: Admit) -> Ticket {
    accept(admit).0
}

/// The refusal's message, as a client or a log would see it.
pub(super) fn expected_text(admit: &Admit) -> String {
    match admit {
        Admit::Refuse(refusal) => refusal.to_string(),
        Admit::Accept { .. } => String::new(),
    }
}

/// Closes `n` connections from `source` after failed authentication.
pub(super) fn fail(adm: &mut Admission, source: IpAddr, n: usize, now: Instant) {
    for _ in 0..n {
        let t = ticket(adm.connect(source, now));
        adm.closed(t, true, now);
    }
}

/// The internal structures agree with one another and with the bounds.
pub(super) fn check_consistent(adm: &Admission) {
    assert!(adm.slots.len() <= adm.max_unauthenticated);
    let in_sources: usize = adm.sources.values().map(BTreeSet::len).sum();
    assert_eq!(in_sources, adm.slots.len());
    assert_eq!(adm.ranking.len(), adm.sources.len());
    for (bucket, tickets) in &adm.sources {
        assert!(!tickets.is_empty() && tickets.len() <= adm.max_per_source);
        let rank = rank_of(*bucket, tickets).expect("non-empty");
        assert!(adm.ranking.contains(&rank));
    }
    assert_eq!(adm.penalties.len(), adm.expiries.len());
    assert!(adm.penalties.len() <= adm.limits.max_penalised_sources);
    for (bucket, until) in &adm.penalties {
        assert!(adm.expiries.contains(&(*until, *bucket)));
    }
}

#[test]
fn the_per_source_limit_refuses_the_connection_after_the_limit() {
    // (configured limit, effective limit)
    for (configured, effective) in [(0, 1), (1, 1), (2, 2), (5, 5), (32, 32)] {
        let mut adm = Admission::new(limits(1000, configured));
        let now = Instant::now();
        let source = v4(192, 0, 2, 1);
        for _ in 0..effective {
            ticket(adm.connect(source, now));
        }
        let expected = Admit::Refuse(Refusal::PerSource {
            source: "192.0.2.1".into(),
            limit: effective,
        });
        assert_eq!(adm.connect(source, now), expected, "limit {configured}");
        let text = format!("too many connections from 192.0.2.1 waiting to log in ({effective})");
        assert_eq!(expected_text(&expected), text);
        assert_eq!(adm.unauthenticated_from(source), effective);
        // Another source is not affected.
        ticket(adm.connect(v4(192, 0, 2, 2), now));
        check_consistent(&adm);
    }
}

#[test]
fn a_slot_is_freed_by_authenticated_and_by_closed() {
    type Free = fn(&mut Admission, Ticket, Instant);
    let cases: [(&str, Free); 3] = [
        ("authenticated", |a, t, _| a.authenticated(t)),
        ("closed", |a, t, now| a.closed(t, false, now)),
        ("closed after failing", |a, t, now| a.closed(t, true, now)),
    ];
    for (name, free) in cases {
        let mut adm = Admission::new(limits(10, 2));
        let now = Instant::now();
        let source = v4(198, 51, 100, 7);
        let first = ticket(adm.connect(source, now));
        ticket(adm.connect(source, now));
        let refused = matches!(adm.connect(source, now), Admit::Refuse(_));
        assert!(refused, "{name}");
        free(&mut adm, first, now);
        assert_eq!(adm.unauthenticated_from(source), 1, "{name}");
        assert_eq!(adm.unauthenticated(), 1, "{name}");
        ticket(adm.connect(source, now));
        check_consistent(&adm);
    }
}

#[test]
fn authenticated_is_idempotent_and_a_later_failed_close_never_penalises() {
    let mut adm = Admission::new(limits(10, 5));
    let now = Instant::now();
    let source = v4(203, 0, 113, 9);
    let other = ticket(adm.connect(source, now));
    let t = ticket(adm.connect(source, now));
    adm.authenticated(t);
    adm.authenticated(t);
    assert_eq!(adm.unauthenticated_from(source), 1);
    for _ in 0..10 {
        adm.closed(t, true, now);
    }
    assert_eq!(adm.penalty(source, now), None);
    assert_eq!(adm.unauthenticated_from(source), 1);
    adm.closed(other, false, now);
    assert_eq!(adm.unauthenticated(), 0);
    check_consistent(&adm);
}

#[test]
fn tickets_increase_and_unknown_tickets_are_ignored() {
    let mut adm = Admission::new(limits(3, 1));
    let now = Instant::now();
    let mut last = 0;
    for i in 0..100u8 {
        let t = ticket(adm.connect(v4(10, 0, 0, i), now));
        assert!(t > last);
        last = t;
    }
    for unknown in [0, last + 1, u64::MAX] {
        adm.authenticated(unknown);
        adm.closed(unknown, true, now);
    }
    assert_eq!(adm.unauthenticated(), 3);
    check_consistent(&adm);
}

#[test]
fn the_total_limit_evicts_the_oldest_connection_of_the_biggest_source() {
    // Connections in order (source index per connection), the limit, and the
    // index (into that order) of the connection expected to be evicted.
    let cases: [(&str, &[u8], usize, usize); 5] = [
        ("the biggest source", &[1, 2, 1, 2, 1], 5, 0),
        ("biggest source, not oldest", &[2, 1, 1, 1], 4, 1),
        ("tie: the oldest", &[1, 2, 2, 1], 4, 0),
        ("tie, other order", &[2, 1, 1, 2], 4, 0),
        ("all sources of one", &[3, 1, 2], 3, 0),
    ];
    for (name, order, limit, victim) in cases {
        let mut adm = Admission::new(limits(limit, 10));
        let now = Instant::now();
        let tickets: Vec<Ticket> = order
            .iter()
            .map(|&s| ticket(adm.connect(v4(192, 0, 2, s), now)))
            .collect();
        let (newcomer, evict) = accept(adm.connect(v4(192, 0, 2, 99), now));
        assert_eq!(evict, tickets.get(victim).copied(), "{name}");
        assert_eq!(adm.unauthenticated(), limit, "{name}");
        assert_eq!(adm.unauthenticated_from(v4(192, 0, 2, 99)), 1, "{name}");
        assert!(newcomer > tickets.iter().copied().max().unwrap_or(0));
        check_consistent(&adm);
    }
}

#[test]
fn the_total_limit_never_refuses_and_zero_is_treated_as_one() {
    for (configured, effective) in [(0, 1), (1, 1), (4, 4)] {
        let mut adm = Admission::new(limits(configured, 2));
        let now = Instant::now();
        for i in 0..1000usize {
            let source = IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i as u32));
            let (_, evict) = accept(adm.connect(source, now));
            assert_eq!(evict.is_some(), i >= effective, "limit {configured}");
            assert_eq!(adm.unauthenticated(), effective.min(i + 1));
        }
        check_consistent(&adm);
    }
}

#[test]
fn a_flood_from_200_sources_of_10_connections_leaves_a_new_source_admitted() {
    let mut adm = Admission::new(limits(512, 32));
    let now = Instant::now();
    let flooders: Vec<IpAddr> = (0..200u8).map(|i| v4(198, 18, 0, i)).collect();
    for _ in 0..10 {
        for &source in &flooders {
            accept(adm.connect(source, now));
        }
    }
    assert_eq!(adm.unauthenticated(), 512);
    // Eviction takes from the biggest, so the flood is spread evenly.
    let most = flooders.iter().map(|&s| adm.unauthenticated_from(s)).max();
    assert_eq!(most, Some(3));
    let user = v6("2001:db8:1::1");
    let (t, evict) = accept(adm.connect(user, now));
    assert!(evict.is_some() && evict != Some(t));
    assert_eq!(adm.unauthenticated_from(user), 1);
    assert_eq!(adm.unauthenticated(), 512);
    check_consistent(&adm);
}

#[test]
fn evicted_tickets_later_closed_and_authenticated_are_no_ops() {
    let mut adm = Admission::new(limits(2, 5));
    let now = Instant::now();
    let flooder = v4(192, 0, 2, 66);
    let victim = ticket(adm.connect(flooder, now));
    ticket(adm.connect(flooder, now));
    let (_, evict) = accept(adm.connect(v4(192, 0, 2, 1), now));
    assert_eq!(evict, Some(victim));
    for _ in 0..10 {
        adm.closed(victim, true, now);
        adm.authenticated(victim);
    }
    assert_eq!(adm.penalty(flooder, now), None);
    assert_eq!(adm.unauthenticated(), 2);
    assert_eq!(adm.unauthenticated_from(flooder), 1);
    check_consistent(&adm);
}

#[test]
fn penalties_accrue_per_failure_and_cap_at_the_maximum() {
    // (table size, failures, expected penalty) with 5 s per failure and a
    // 30 s cap; the threshold (1 h) is never reached. A table of 0 turns
    // penalties off.
    let cases = [
        (9, 0, None),
        (9, 1, Some(5)),
        (9, 2, Some(10)),
        (9, 6, Some(30)),
        (9, 50, Some(30)),
        (0, 50, None),
    ];
    for (table, failures, expected) in cases {
        let mut adm = Admission::new(AdmissionLimits {
            penalty_max: secs(30),
            penalty_threshold: secs(3600),
            max_penalised_sources: table,
            ..AdmissionLimits::default()
        });
        let now = Instant::now();
        let source = v4(192, 0, 2, 1);
        fail(&mut adm, source, failures, now);
        assert_eq!(
            adm.penalty(source, now),
            expected.map(secs),
            "{table} {failures}"
        );
        assert_eq!(adm.penalty(v4(192, 0, 2, 2), now), None);
    }
}

#[test]
fn penalties_decay_with_time() {
    let mut adm = Admission::new(AdmissionLimits::default());
    let start = Instant::now();
    let source = v4(192, 0, 2, 1);
    fail(&mut adm, source, 3, start); // 15 s
    let cases = [
        (0, Some(15)),
        (5, Some(10)),
        (14, Some(1)),
        (15, None),
        (100, None),
    ];
    for (after, left) in cases {
        assert_eq!(
            adm.penalty(source, start + secs(after)),
            left.map(secs),
            "{after}"
        );
    }
    // A failure after some decay adds to what is left.
    let later = start + secs(10);
    fail(&mut adm, source, 1, later);
    assert_eq!(adm.penalty(source, later), Some(secs(10)));
    // A failure after expiry starts again from now.
    let much_later = start + secs(1000);
    fail(&mut adm, source, 1, much_later);
    assert_eq!(adm.penalty(source, much_later), Some(secs(5)));
    check_consistent(&adm);
}

#[test]
fn a_source_is_refused_only_while_its_penalty_exceeds_the_threshold() {
    // Default limits: 5 s per failure, 15 s threshold. (failures, time after
    // the failures in ms, expected retry_after_secs or None for accepted)
    let cases: [(usize, u64, Option<u64>); 8] = [
        (3, 0, None),        // 15 s: not above the threshold
        (4, 0, Some(5)),     // 20 s
        (4, 4_999, Some(1)), // 15.001 s: rounded up
        (4, 4_000, Some(1)), // 16 s
        (4, 3_500, Some(2)), // 16.5 s: rounded up
        (4, 5_000, None),    // back at the threshold
        (200, 0, Some(585)), // capped at 600 s
        (200, 585_000, None),
    ];
    for (failures, after_ms, expected) in cases {
        let mut adm = Admission::new(limits(1000, 1000));
        let start = Instant::now();
        let source = v4(203, 0, 113, 5);
        // Open every connection first, so none is refused, then fail them all.
        let tickets: Vec<Ticket> = (0..failures)
            .map(|_| ticket(adm.connect(source, start)))
            .collect();
        for t in tickets {
            adm.closed(t, true, start);
        }
        let got = adm.connect(source, start + Duration::from_millis(after_ms));
        match expected {
            None => drop(ticket(got)),
            Some(retry_after_secs) => {
                let expected = Admit::Refuse(Refusal::Penalised {
                    source: "203.0.113.5".into(),
                    retry_after_secs,
                });
                assert_eq!(got, expected, "{failures} failures, {after_ms} ms");
                let text = format!(
                    "203.0.113.5 failed to authenticate too often; try again in {retry_after_secs} s"
                );
                assert_eq!(expected_text(&expected), text);
            }
        }
    }
}

#[test]
fn exempt_sources_are_never_penalised_but_still_use_slots() {
    let exempt: Vec<ipnet::IpNet> = ["10.0.0.0/8", "2001:db8:e::/48", "::ffff:192.0.2.0/120"]
        .iter()
        .map(|n| n.parse().expect("test net"))
        .collect();
    let mut adm = Admission::new(AdmissionLimits {
        max_unauthenticated_per_source: 2,
        exempt,
        ..AdmissionLimits::default()
    });
    let now = Instant::now();
    let cases = [
        (v4(10, 9, 8, 7), true),
        (v6("2001:db8:e:1::5"), true),
        (v6("::ffff:10.1.1.1"), true),
        (v4(192, 0, 2, 44), true), // exempt through its mapped form
        (v4(11, 0, 0, 1), false),
        (v6("2001:db8:f::1"), false),
    ];
    for (source, is_exempt) in cases {
        fail(&mut adm, source, 3, now);
        assert_eq!(adm.penalty(source, now).is_none(), is_exempt, "{source}");
        if is_exempt {
            ticket(adm.connect(source, now));
            ticket(adm.connect(source, now));
            let got = adm.connect(source, now);
            let refused = matches!(got, Admit::Refuse(Refusal::PerSource { .. }));
            assert!(refused, "{source}");
        }
    }
}

#[test]
fn ipv6_sources_in_the_same_64_share_a_bucket_and_different_64s_do_not() {
    let mut adm = Admission::new(limits(100, 2));
    let now = Instant::now();
    ticket(adm.connect(v6("2001:db8:0:1::1"), now));
    ticket(adm.connect(v6("2001:db8:0:1:ffff:ffff:ffff:ffff"), now));
    assert_eq!(
        adm.connect(v6("2001:db8:0:1::abcd"), now),
        Admit::Refuse(Refusal::PerSource {
            source: "2001:db8:0:1::/64".into(),
            limit: 2
        })
    );
    assert_eq!(adm.unauthenticated_from(v6("2001:db8:0:1::9")), 2);
    for other in ["2001:db8:0:2::1", "2001:db8:0:0::1", "2001:db9:0:1::1"] {
        assert_eq!(adm.unauthenticated_from(v6(other)), 0);
        ticket(adm.connect(v6(other), now));
    }
    // Penalties share the bucket too.
    fail(&mut adm, v6("2001:db8:0:7::1"), 2, now);
    assert_eq!(adm.penalty(v6("2001:db8:0:7::2"), now), Some(secs(10)));
    assert_eq!(adm.penalty(v6("2001:db8:0:8::1"), now), None);
    check_consistent(&adm);
}

#[test]
fn an_ipv4_mapped_address_is_the_same_source_as_its_ipv4_address() {
    let mut adm = Admission::new(limits(100, 2));
    let now = Instant::now();
    let plain = v4(192, 0, 2, 77);
    let mapped = v6("::ffff:192.0.2.77");
    ticket(adm.connect(plain, now));
    ticket(adm.connect(mapped, now));
    assert_eq!(adm.unauthenticated_from(plain), 2);
    assert_eq!(
        adm.connect(mapped, now),
        Admit::Refuse(Refusal::PerSource {
            source: "192.0.2.77".into(),
            limit: 2
        })
    );
    let mut adm = Admission::new(AdmissionLimits::default());
    fail(&mut adm, mapped, 2, now);
    assert_eq!(adm.penalty(plain, now), Some(secs(10)));
}

#[test]
fn the_penalty_table_stays_bounded_under_100000_distinct_failing_sources() {
    // Long penalties, so that none expires during the test.
    let mut adm = Admission::new(AdmissionLimits {
        penalty_per_failure: secs(3600),
        penalty_max: secs(3600),
        ..AdmissionLimits::default()
    });
    let start = Instant::now();
    let source = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
    for i in 0..100_000u32 {
        let now = start + Duration::from_millis(u64::from(i));
        fail(&mut adm, source(i), 1, now);
        assert!(adm.penalties.len() <= 65536);
    }
    assert_eq!(adm.penalties.len(), 65536);
    assert_eq!(adm.expiries.len(), 65536);
    // The entries dropped were the ones expiring first: the oldest failures.
    let now = start + Duration::from_millis(99_999);
    assert_eq!(adm.penalty(source(0), now), None);
    assert_eq!(adm.penalty(source(34_463), now), None);
    assert!(adm.penalty(source(34_464), now).is_some());
    assert_eq!(adm.penalty(source(99_999), now), Some(secs(3600)));
    check_consistent(&adm);
}
