//! The harness's own command line (it is built with `harness = false`, so `main` parses it).
//!
//! `cargo bench` passes `--bench`: that selects the full sizes. Without it (as
//! `cargo test --all-targets` runs every bench target) the same measurements run at smoke
//! sizes, so the harness is exercised on every test run without taking minutes. Options
//! after `--` override either set of sizes. In smoke mode arguments the harness does not
//! know are ignored, because a test runner may pass libtest flags (`--nocapture`, a filter)
//! to every target; with `--bench` they are an error, so a typo cannot silently run a
//! different benchmark.

use std::collections::BTreeSet;

/// The measurement ids of the issue, in report order.
pub const IDS: [&str; 7] = ["P1", "P2", "P3", "P4", "P5", "P6", "P7"];

pub const USAGE: &str = "\
usage: cargo bench --bench gateway [-- OPTIONS]
  --size BYTES|256MiB   payload of the transfers (P1, P2, P5, P6)
  --rounds N            measured rounds of the transfers (default 5, plus 1 warm-up)
  --latency-runs N      ssh runs per side for P3 (default 200)
  --sessions N          PTY sessions held for P4 (default 1000)
  --idle N              idle connections held for P4 (default 10000)
  --only P1,P3,...      run only these measurements";

#[derive(Debug, Clone)]
pub struct Options {
    /// `--bench` was given: full sizes, warm-up rounds.
    pub bench: bool,
    pub size: u64,
    pub rounds: usize,
    /// One round (and one latency pair, one start-up run) before the measured ones,
    /// discarded: it pays for page-cache misses, lazily built TLS state and the like.
    pub warmup: bool,
    pub latency_runs: usize,
    pub sessions: usize,
    pub idle: usize,
    pub startup_runs: usize,
    pub only: Option<BTreeSet<String>>,
    /// Arguments ignored in smoke mode (shown in the report).
    pub ignored: Vec<String>,
}

impl Options {
    pub fn wants(&self, id: &str) -> bool {
        self.only.as_ref().is_none_or(|s| s.contains(id))
    }

    fn full() -> Options {
        Options {
            bench: true,
            size: 256 * 1024 * 1024,
            rounds: 5,
            warmup: true,
            latency_runs: 200,
            sessions: 1000,
            idle: 10_000,
            startup_runs: 10,
            only: None,
            ignored: Vec::new(),
        }
    }

    fn smoke() -> Options {
        Options {
            bench: false,
            size: 1024 * 1024,
            rounds: 1,
            warmup: false,
            latency_runs: 3,
            sessions: 5,
            idle: 20,
            startup_runs: 2,
            only: None,
            ignored: Vec::new(),
        }
    }
}

/// `256MiB`, `64KiB`, `1GiB`, `1000000`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("--size {text:?}: expected BYTES or N followed by KiB, MiB, GiB"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1024,
        "MiB" | "M" => 1024 * 1024,
        "GiB" | "G" => 1024 * 1024 * 1024,
        other => return Err(format!("--size {text:?}: unknown unit {other:?}")),
    };
    match n.checked_mul(mult) {
        Some(0) => Err("--size must be at least 1 byte".into()),
        Some(v) => Ok(v),
        None => Err(format!("--size {text:?} is too large")),
    }
}

fn count(name: &str, text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{name} {text:?}: expected a positive whole number")),
    }
}

/// Parse the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let bench = args.iter().any(|a| a == "--bench");
    let mut o = if bench {
        Options::full()
    } else {
        Options::smoke()
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{key} needs a value\n{USAGE}"))
        };
        match key {
            "--bench" => {}
            "--size" => o.size = parse_size(&value()?)?,
            "--rounds" => o.rounds = count(key, &value()?)?,
            "--latency-runs" => o.latency_runs = count(key, &value()?)?,
            "--sessions" => o.sessions = count(key, &value()?)?,
            "--idle" => o.idle = count(key, &value()?)?,
            "--only" => {
                let mut set = BTreeSet::new();
                for id in value()?.split(',').map(|s| s.trim().to_ascii_uppercase()) {
                    if !IDS.contains(&id.as_str()) {
                        return Err(format!("--only: unknown measurement {id:?} (P1..P7)"));
                    }
                    set.insert(id);
                }
                o.only = Some(set);
            }
            "--help" | "-h" => return Err(USAGE.into()),
            other if bench => return Err(format!("unknown option {other:?}\n{USAGE}")),
            other => o.ignored.push(other.to_owned()),
        }
    }
    Ok(o)
}
