//! A model-based test of connection admission: a random walk of operations checked
//! against a naive model that writes every rule out with linear scans.

use super::tests::*;
use super::*;

/// A small xorshift64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The naive model: every rule written out with linear scans.
struct Model {
    limits: AdmissionLimits,
    next: Ticket,
    /// Open unauthenticated connections, oldest first.
    open: Vec<(Ticket, IpAddr)>,
    penalties: Vec<(Bucket, Instant)>,
}

impl Model {
    fn held(&self, b: Bucket) -> usize {
        self.open
            .iter()
            .filter(|(_, ip)| Bucket::of(*ip) == b)
            .count()
    }

    fn penalty(&self, b: Bucket, now: Instant) -> Option<Duration> {
        let until = self.penalties.iter().find(|(pb, _)| *pb == b)?.1;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    fn connect(&mut self, ip: IpAddr, now: Instant) -> Admit {
        let b = Bucket::of(ip);
        self.penalties.retain(|(_, until)| *until > now);
        if let Some(left) = self.penalty(b, now)
            && left > self.limits.penalty_threshold
        {
            let over = (left - self.limits.penalty_threshold).as_nanos();
            let retry_after_secs = over.div_ceil(1_000_000_000).max(1) as u64;
            let source = b.to_string();
            return Admit::Refuse(Refusal::Penalised {
                source,
                retry_after_secs,
            });
        }
        if self.held(b) >= self.limits.max_unauthenticated_per_source {
            let limit = self.limits.max_unauthenticated_per_source;
            return Admit::Refuse(Refusal::PerSource {
                source: b.to_string(),
                limit,
            });
        }
        let mut evict = None;
        if self.open.len() >= self.limits.max_unauthenticated {
            let held: Vec<usize> = self
                .open
                .iter()
                .map(|e| self.held(Bucket::of(e.1)))
                .collect();
            let most = held.iter().max().copied();
            // `open` is oldest first, so the first of a biggest source is it.
            let pos = held.iter().position(|&h| Some(h) == most);
            evict = pos.map(|p| self.open.remove(p).0);
        }
        let ticket = self.next;
        self.next += 1;
        self.open.push((ticket, ip));
        Admit::Accept { ticket, evict }
    }

    fn closed(&mut self, ticket: Ticket, failed: bool, now: Instant) {
        let Some(pos) = self.open.iter().position(|(t, _)| *t == ticket) else {
            return;
        };
        let (_, ip) = self.open.remove(pos);
        let exempt = self
            .limits
            .exempt
            .iter()
            .any(|n| n.contains(&ip.to_canonical()));
        if !failed || exempt {
            return;
        }
        self.penalties.retain(|(_, until)| *until > now);
        let b = Bucket::of(ip);
        let old = self.penalties.iter().position(|(pb, _)| *pb == b);
        let base = old
            .and_then(|p| self.penalties.get(p))
            .map_or(now, |e| e.1.max(now));
        let until = (base + self.limits.penalty_per_failure).min(now + self.limits.penalty_max);
        match old {
            Some(p) => self.penalties[p].1 = until,
            None => {
                if self.penalties.len() >= self.limits.max_penalised_sources {
                    let first = self
                        .penalties
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (b, u))| (*u, *b));
                    let p = first.map(|(p, _)| p).expect("table is full");
                    self.penalties.remove(p);
                }
                self.penalties.push((b, until));
            }
        }
    }
}

/// Mostly a ticket that still holds a slot; sometimes any ticket, known or not.
fn pick(rng: &mut Rng, model: &Model) -> Ticket {
    match model.open.get(rng.below(model.open.len().max(1))) {
        Some(&(t, _)) if rng.below(5) != 0 => t,
        _ => rng.next() % (model.next + 2),
    }
}

#[test]
fn a_random_walk_of_100000_operations_keeps_the_invariants() {
    let limits = AdmissionLimits {
        max_unauthenticated: 12,
        max_unauthenticated_per_source: 4,
        penalty_per_failure: secs(5),
        penalty_max: secs(40),
        penalty_threshold: secs(15),
        max_penalised_sources: 6,
        exempt: vec!["10.0.0.0/24".parse().expect("test net")],
    };
    let pool = [
        v4(10, 0, 0, 1), // exempt
        v4(192, 0, 2, 1),
        v4(192, 0, 2, 2),
        v4(192, 0, 2, 3),
        v6("::ffff:192.0.2.3"),
        v4(198, 51, 100, 1),
        v4(198, 51, 100, 2),
        v4(203, 0, 113, 1),
        v6("2001:db8::1"),
        v6("2001:db8::2"),
        v6("2001:db8:0:1::1"),
        v6("2001:db8:0:2::1"),
        v6("2001:db8:0:3::1"),
    ];
    let mut adm = Admission::new(limits.clone());
    let mut model = Model {
        limits,
        next: 1,
        open: Vec::new(),
        penalties: Vec::new(),
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut now = Instant::now();
    let (mut accepted, mut evicted, mut per_source, mut penalised) = (0, 0, 0, 0);
    for step in 0..100_000 {
        let source = pool[rng.below(pool.len())];
        match rng.below(10) {
            0..=3 => {
                let got = adm.connect(source, now);
                assert_eq!(got, model.connect(source, now), "step {step}");
                match got {
                    Admit::Accept { evict, .. } => {
                        accepted += 1;
                        evicted += usize::from(evict.is_some());
                    }
                    Admit::Refuse(Refusal::PerSource { .. }) => per_source += 1,
                    Admit::Refuse(Refusal::Penalised { .. }) => penalised += 1,
                }
            }
            4 | 5 => {
                let t = pick(&mut rng, &model);
                adm.authenticated(t);
                model.closed(t, false, now);
            }
            6..=8 => {
                let t = pick(&mut rng, &model);
                let failed = rng.below(4) != 0;
                adm.closed(t, failed, now);
                model.closed(t, failed, now);
            }
            _ => now += Duration::from_millis(rng.next() % 4000),
        }
        assert_eq!(adm.unauthenticated(), model.open.len(), "step {step}");
        assert!(adm.unauthenticated() <= 12);
        for &ip in &pool {
            let b = Bucket::of(ip);
            assert_eq!(adm.unauthenticated_from(ip), model.held(b), "step {step}");
            let penalty = model.penalty(b, now);
            assert_eq!(adm.penalty(ip, now), penalty, "step {step} {ip}");
        }
        if step % 64 == 0 {
            check_consistent(&adm);
        }
    }
    // The walk exercised every outcome.
    let counts = format!(
        "{accepted} accepted, {evicted} evicted, {per_source} per source, {penalised} penalised"
    );
    assert!(accepted > 1000 && evicted > 100, "{counts}");
    assert!(per_source > 100 && penalised > 100, "{counts}");
}
