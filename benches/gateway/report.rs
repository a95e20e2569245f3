//! The results: a summary with each measurement of the issue (P1–P7) next to its goal
//! (PASS/MISS), then the detail behind each figure (every route's median, spread and CPU
//! seconds per GiB by process, latency percentiles, memory, start-up runs), headed by the
//! machine, the versions, the exact command and the build profile.
//!
//! Goals are printed, never asserted: the smoke run's figures (tiny sizes, debug build)
//! mean nothing, and a loaded machine makes any run's figures move.

use std::collections::BTreeMap;

use super::latency::{self, Latency};
use super::memory::Held;
use super::startup::Startup;
use super::table::{Table, fmt, fmt_signed, max, median, min, percentile};
use super::transfer::{Cipher, ONE_CIPHER, Route, Sample};

pub struct Results {
    pub transfers: BTreeMap<Route, Vec<Sample>>,
    pub latency: Option<Latency>,
    pub memory: Option<Vec<Held>>,
    pub startup: Option<Startup>,
}

pub struct Report {
    pub header: Vec<(String, String)>,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
}

const MIB: f64 = 1024.0 * 1024.0;

fn verdict(ok: bool) -> String {
    if ok { "PASS" } else { "MISS" }.into()
}

fn check(value: f64, ok: impl Fn(f64) -> bool) -> String {
    if value.is_finite() {
        verdict(ok(value))
    } else {
        "n/a".into()
    }
}

impl Results {
    /// Every sample as JSON (seconds and CPU seconds per transfer, milliseconds for P3
    /// and P7).
    pub fn raw(&self) -> serde_json::Value {
        use serde_json::json;
        let transfers: serde_json::Map<String, serde_json::Value> = self
            .transfers
            .iter()
            .map(|(route, samples)| {
                let v: Vec<serde_json::Value> = samples
                    .iter()
                    .map(|s| {
                        json!({
                            "secs": s.secs,
                            "cpu": {
                                "gateway": s.cpu.gateway,
                                "devcluster": s.cpu.devcluster,
                                "pod": s.cpu.pod,
                                "clients": s.cpu.clients,
                                "harness": s.cpu.harness,
                            },
                            "eof_lag": s.eof_lag,
                            "cast_per_byte": s.cast_per_byte,
                        })
                    })
                    .collect();
                (route.label(), json!(v))
            })
            .collect();
        json!({
            "transfers": transfers,
            "latency_ms": self.latency.as_ref().map(|l| json!({
                "gateway": l.gateway_ms,
                "sshd": l.sshd_ms,
            })),
            "startup_ms": self.startup.as_ref().map(|s| json!(s.runs_ms)),
        })
    }

    fn mib_s(&self, route: Route, size: u64) -> f64 {
        self.transfers.get(&route).map_or(f64::NAN, |s| {
            median(
                &s.iter()
                    .map(|x| size as f64 / MIB / x.secs)
                    .collect::<Vec<_>>(),
            )
        })
    }

    fn summary(&self, size: u64) -> Table {
        let mut t = Table::new(
            "Summary (medians; goals from the issue, not asserted)",
            &[
                "id",
                "measurement",
                "podgate",
                "baseline",
                "result",
                "goal",
                "verdict",
            ],
        );
        let rate = |r| self.mib_s(r, size);
        let mibs = |x: f64| format!("{} MiB/s", fmt(x, 1));
        let size_mib = size as f64 / MIB;
        for c in [Cipher::Chacha, Cipher::Aes128] {
            if self.transfers.contains_key(&Route::Kubectl) {
                let (g, k) = (rate(Route::Gateway(c)), rate(Route::Kubectl));
                t.row(vec![
                    "P1".into(),
                    format!(
                        "exec stdout {size_mib:.0} MiB, ssh gw ({}) ÷ kubectl exec",
                        c.short()
                    ),
                    mibs(g),
                    mibs(k),
                    format!("{} ×", fmt(g / k, 2)),
                    "≥ 1.0".into(),
                    check(g / k, |x| x >= 1.0),
                ]);
            }
        }
        for c in [Cipher::Chacha, Cipher::Aes128] {
            if self.transfers.contains_key(&Route::Sshd(c)) {
                let (g, s) = (rate(Route::Gateway(c)), rate(Route::Sshd(c)));
                t.row(vec![
                    "P2".into(),
                    format!(
                        "exec stdout {size_mib:.0} MiB, ssh gw ÷ ssh sshd ({})",
                        c.short()
                    ),
                    mibs(g),
                    mibs(s),
                    format!("{} ×", fmt(g / s, 2)),
                    "≥ 0.7".into(),
                    check(g / s, |x| x >= 0.7),
                ]);
            }
        }
        if let Some(l) = &self.latency {
            let (g50, g99) = (
                percentile(&l.gateway_ms, 50.0),
                percentile(&l.gateway_ms, 99.0),
            );
            let (s50, s99) = (percentile(&l.sshd_ms, 50.0), percentile(&l.sshd_ms, 99.0));
            t.row(vec![
                "P3".into(),
                format!(
                    "ssh gw exec true − ssh sshd true, fresh ssh each ({} runs each, {})",
                    l.gateway_ms.len(),
                    latency::CIPHER.short()
                ),
                format!("p50 {} ms, p99 {} ms", fmt(g50, 1), fmt(g99, 1)),
                format!("p50 {} ms, p99 {} ms", fmt(s50, 1), fmt(s99, 1)),
                format!(
                    "{} ms p50, {} ms p99",
                    fmt_signed(g50 - s50, 1),
                    fmt_signed(g99 - s99, 1)
                ),
                "≤ 20 ms (p50)".into(),
                check(g50 - s50, |x| x <= 20.0),
            ]);
        }
        if let Some(memory) = &self.memory {
            for h in memory {
                let (podgate, baseline, result, v) = match &h.result {
                    Ok(f) => {
                        let per_rss =
                            (f.gw_rss_held as f64 - f.gw_rss_before as f64) / f.held.max(1) as f64;
                        let at_1000 = (f.gw_rss_before as f64 + per_rss * 1000.0) / 1024.0;
                        let exact = f.held == 1000;
                        (
                            format!(
                                "RSS {} MiB, PSS {} MiB with {}",
                                fmt(f.gw_rss_held as f64 / 1024.0, 1),
                                fmt(f.gw_pss_held as f64 / 1024.0, 1),
                                f.held
                            ),
                            format!(
                                "before: RSS {} MiB, PSS {} MiB",
                                fmt(f.gw_rss_before as f64 / 1024.0, 1),
                                fmt(f.gw_pss_before as f64 / 1024.0, 1)
                            ),
                            if exact {
                                format!("{} KiB each (PSS)", fmt(f.per_conn_kib(), 1))
                            } else {
                                format!(
                                    "{} KiB each (PSS); RSS at 1,000 ≈ {} MiB (extrapolated)",
                                    fmt(f.per_conn_kib(), 1),
                                    fmt(at_1000, 1)
                                )
                            },
                            at_1000,
                        )
                    }
                    Err(e) => (
                        format!("not available: {e}"),
                        "–".into(),
                        "–".into(),
                        f64::NAN,
                    ),
                };
                let pty = h.what == "PTY sessions";
                t.row(vec![
                    "P4".into(),
                    format!("gateway memory, {} {}", h.n, h.what),
                    podgate,
                    baseline,
                    result,
                    if pty {
                        "≤ 150 MiB at 1,000 (RSS)"
                    } else {
                        "–"
                    }
                    .into(),
                    if pty {
                        check(v, |x| x <= 150.0)
                    } else {
                        "–".into()
                    },
                ]);
            }
        }
        if self.transfers.contains_key(&Route::Recorded) {
            let (on, off) = (rate(Route::Recorded), rate(Route::Discarded));
            t.row(vec![
                "P5".into(),
                format!("recording on ÷ off, exec stdout ({})", ONE_CIPHER.short()),
                mibs(on),
                mibs(off),
                format!("{} ×", fmt(on / off, 3)),
                "≥ 0.95".into(),
                check(on / off, |x| x >= 0.95),
            ]);
            let per = median(
                &self.transfers[&Route::Recorded]
                    .iter()
                    .filter_map(|s| s.cast_per_byte)
                    .collect::<Vec<_>>(),
            );
            t.row(vec![
                "P5".into(),
                ".cast bytes per output byte (base64 text lines)".into(),
                fmt(per, 3),
                "–".into(),
                format!("{} B/B", fmt(per, 3)),
                "≤ 1.15".into(),
                check(per, |x| x <= 1.15),
            ]);
        }
        if self.transfers.contains_key(&Route::ForwardGateway) {
            let (g, k, s) = (
                rate(Route::ForwardGateway),
                rate(Route::ForwardKube),
                rate(Route::ForwardSshd),
            );
            t.row(vec![
                "P6".into(),
                format!("port-forward {size_mib:.0} MiB, ssh -L gw ÷ kube-rs direct"),
                mibs(g),
                mibs(k),
                format!("{} ×", fmt(g / k, 2)),
                "≥ 0.9".into(),
                check(g / k, |x| x >= 0.9),
            ]);
            t.row(vec![
                "P6".into(),
                format!("(extra) ssh -L gw ÷ ssh -L sshd ({})", ONE_CIPHER.short()),
                mibs(g),
                mibs(s),
                format!("{} ×", fmt(g / s, 2)),
                "–".into(),
                "–".into(),
            ]);
        }
        if let Some(st) = &self.startup {
            let m = median(&st.runs_ms);
            t.row(vec![
                "P7".into(),
                format!(
                    "start to SSH banner, podgate serve ({} runs)",
                    st.runs_ms.len()
                ),
                format!("{} ms", fmt(m, 1)),
                "–".into(),
                format!("{} ms", fmt(m, 1)),
                "≤ 50 ms".into(),
                check(m, |x| x <= 50.0),
            ]);
            t.row(vec![
                "P7".into(),
                "binary size (image needs docker; stripped = image floor)".into(),
                format!("{} MiB", fmt(st.binary as f64 / MIB, 1)),
                "–".into(),
                match &st.stripped {
                    Ok(s) => format!("stripped {} MiB", fmt(*s as f64 / MIB, 1)),
                    Err(e) => format!("strip failed: {e}"),
                },
                "–".into(),
                "–".into(),
            ]);
        }
        t
    }

    fn transfer_detail(&self, size: u64) -> Table {
        let mut t = Table::new(
            "Transfers: every route, and CPU seconds per GiB moved, by process (medians)",
            &[
                "route",
                "runs",
                "MiB/s",
                "min",
                "max",
                "gateway",
                "devcluster",
                "pod (cat)",
                "clients",
                "harness",
                "note",
            ],
        );
        let gib = size as f64 / (1024.0 * MIB);
        for (route, samples) in &self.transfers {
            let rates: Vec<f64> = samples.iter().map(|s| size as f64 / MIB / s.secs).collect();
            let per = |f: &dyn Fn(&Sample) -> Option<f64>| {
                let v: Vec<f64> = samples.iter().filter_map(f).map(|x| x / gib).collect();
                fmt(median(&v), 2)
            };
            let mut note = String::new();
            let lags: Vec<f64> = samples.iter().filter_map(|s| s.eof_lag).collect();
            if !lags.is_empty() {
                note = format!(
                    "close {} ms after last byte",
                    fmt(median(&lags) * 1000.0, 0)
                );
            }
            let casts: Vec<f64> = samples.iter().filter_map(|s| s.cast_per_byte).collect();
            if !casts.is_empty() {
                note = format!(".cast {} B/B", fmt(median(&casts), 3));
            }
            t.row(vec![
                route.label(),
                samples.len().to_string(),
                fmt(median(&rates), 1),
                fmt(min(&rates), 1),
                fmt(max(&rates), 1),
                per(&|s| s.cpu.gateway),
                per(&|s| Some(s.cpu.devcluster)),
                per(&|s| Some(s.cpu.pod)),
                per(&|s| Some(s.cpu.clients)),
                per(&|s| Some(s.cpu.harness)),
                note,
            ]);
        }
        t
    }

    fn latency_detail(l: &Latency) -> Table {
        let mut t = Table::new(
            "P3: one short command, fresh ssh process (ms)",
            &["side", "runs", "min", "p50", "p90", "p99", "max"],
        );
        for (side, v) in [
            ("ssh gateway exec true", &l.gateway_ms),
            ("ssh sshd true", &l.sshd_ms),
        ] {
            t.row(vec![
                side.into(),
                v.len().to_string(),
                fmt(min(v), 1),
                fmt(percentile(v, 50.0), 1),
                fmt(percentile(v, 90.0), 1),
                fmt(percentile(v, 99.0), 1),
                fmt(max(v), 1),
            ]);
        }
        t
    }

    fn memory_detail(m: &[Held]) -> Table {
        let mut t = Table::new(
            "P4: memory (KiB) before and while holding the crowd",
            &[
                "crowd",
                "asked",
                "held",
                "open s",
                "gw RSS before",
                "gw RSS held",
                "gw PSS before",
                "gw PSS held",
                "PSS KiB each",
                "devcluster RSS before",
                "devcluster RSS held",
                "note",
            ],
        );
        for h in m {
            let note = h.scaled.clone().unwrap_or_default();
            let asked = if h.n == h.requested {
                h.n.to_string()
            } else {
                format!("{} (of {})", h.n, h.requested)
            };
            match &h.result {
                Ok(f) => t.row(vec![
                    h.what.into(),
                    asked,
                    f.held.to_string(),
                    fmt(f.open_secs, 1),
                    f.gw_rss_before.to_string(),
                    f.gw_rss_held.to_string(),
                    f.gw_pss_before.to_string(),
                    f.gw_pss_held.to_string(),
                    fmt(f.per_conn_kib(), 1),
                    f.dc_rss_before.to_string(),
                    f.dc_rss_held.to_string(),
                    note,
                ]),
                Err(e) => {
                    let mut row = vec![h.what.into(), asked];
                    row.extend(std::iter::repeat_n("–".to_string(), 9));
                    row.push(format!("not available: {e} {note}").trim().to_owned());
                    t.row(row);
                }
            }
        }
        t
    }

    /// The tables and the notes that explain them.
    pub fn tables(&self, size: u64) -> (Vec<Table>, Vec<String>) {
        let mut tables = vec![self.summary(size)];
        let mut notes = Vec::new();
        if !self.transfers.is_empty() {
            tables.push(self.transfer_detail(size));
            notes.push(
                "Transfer MiB/s: payload ÷ wall time from spawning the client to its exit \
                 (exec routes, so SSH or kubectl connection set-up is included), or from \
                 the local connect / port-forward request to the last byte (port-forward \
                 routes; the close that follows is in the note column)."
                    .into(),
            );
            notes.push(
                "CPU columns: CPU-seconds per GiB moved. gateway = the route's gateway \
                 process (/proc/PID/stat); devcluster = the devcluster process itself; \
                 pod (cat) = the devcluster's reaped children, i.e. the command in the \
                 \"pod\"; clients = the harness's reaped children (ssh, kubectl; for sshd \
                 routes also sshd -i and the cat it runs); harness = the harness process \
                 (reading and checking the bytes, the port-forward source, the in-process \
                 kube-rs client)."
                    .into(),
            );
        }
        if self
            .transfers
            .keys()
            .any(|r| matches!(r, Route::Sshd(_) | Route::ForwardSshd))
            || self.latency.is_some()
        {
            notes.push(
                "sshd baseline: OpenSSH's sshd started per connection in inetd mode \
                 (`sshd -i`, what a listening sshd forks and re-executes anyway), so its \
                 process start, privilege separation and session fork are in its figures \
                 as in production. `SetEnv SHLVL=1` keeps the login shell from reading the \
                 account's ~/.bashrc (a cost of the account, not of sshd)."
                    .into(),
            );
        }
        if self.transfers.contains_key(&Route::Recorded) {
            notes.push(
                "P5: both gateways are built with the library as `podgate serve` builds \
                 itself (the harness re-executed with --gateway-child); the discarding one \
                 differs only in Transcripts::DiscardedForBenchmarks. The recording one \
                 should match the P1 gateway row of the same cipher."
                    .into(),
            );
        }
        if self.transfers.contains_key(&Route::ForwardKube) {
            notes.push(
                "P6: the kube-rs forwarder task ends with \"Sending after closing is not \
                 allowed\" when the server closes the websocket first; the harness ignores \
                 that result once every byte has been checked."
                    .into(),
            );
        }
        if let Some(l) = &self.latency {
            tables.push(Self::latency_detail(l));
        }
        if let Some(m) = &self.memory {
            tables.push(Self::memory_detail(m));
        }
        if let Some(st) = &self.startup {
            let mut t = Table::new("P7: start to SSH banner, each run (ms)", &["runs", "ms"]);
            t.row(vec![
                st.runs_ms.len().to_string(),
                st.runs_ms
                    .iter()
                    .map(|x| fmt(*x, 1))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]);
            tables.push(t);
        }
        (tables, notes)
    }
}

impl Report {
    pub fn text(&self) -> String {
        let mut out = String::from("podgate gateway benchmark\n");
        let w = self.header.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in &self.header {
            out.push_str(&format!("{k:<w$}  {v}\n"));
        }
        for t in &self.tables {
            out.push('\n');
            out.push_str(&t.text());
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(&format!("* {n}\n"));
            }
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("# podgate gateway benchmark\n\n");
        for (k, v) in &self.header {
            out.push_str(&format!("- **{k}**: {}\n", v.replace('|', "\\|")));
        }
        for t in &self.tables {
            out.push('\n');
            out.push_str(&t.markdown());
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(&format!("- {n}\n"));
            }
        }
        out
    }
}
