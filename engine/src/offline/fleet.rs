//! `engine fleet --nats URL`: a durable JetStream consumer of the fleet's summary
//! stream that merges the hosts' window lines into fleet windows: the hosts in each
//! window and those missing or lossy, the top hosts by events, the top executables
//! and peers across hosts, and the correlations per host (docs/fleet.md).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::time::TimeRange;
use crate::error::{Error, Result};

/// What `engine fleet` was asked.
#[derive(Debug, Clone)]
pub struct FleetArgs {
    pub url: String,
    pub range: TimeRange,
    /// Read for this long; `None`: what the stream holds now (`--once`).
    pub duration: Option<Duration>,
    /// The durable consumer's name (it remembers what it has read).
    pub durable: String,
    pub text: bool,
    /// Entries in each top list.
    pub top_n: usize,
    /// Fleet windows of this length (hosts' windows grouped by where they start);
    /// `None`: the hosts' own windows.
    pub window_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct HostWindow {
    events: u64,
    records: u64,
    lossy: bool,
    end: String,
}

#[derive(Debug, Default)]
struct FleetWindow {
    hosts: BTreeMap<String, HostWindow>,
    exes: BTreeMap<String, u64>,
    peers: BTreeMap<(String, u64), u64>,
}

#[derive(Debug, Default)]
struct Fleet {
    /// Regroup into windows of this length.
    window_ms: Option<u64>,
    /// By (start, window_ms).
    windows: BTreeMap<(String, u64), FleetWindow>,
    /// (host, ts, rule) of every correlation.
    correlations: Vec<(String, String, String)>,
    hosts: BTreeSet<String>,
}

fn events_of(v: &Value) -> u64 {
    v.get("kinds")
        .and_then(Value::as_object)
        .map_or(0, |k| k.values().filter_map(|c| c["events"].as_u64()).sum())
}

impl Fleet {
    fn add(&mut self, subject_kind: &str, v: &Value, range: &TimeRange) {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let host = s("host");
        match subject_kind {
            "summary" => {
                let start = s("start");
                let in_range = start
                    .parse::<jiff::Timestamp>()
                    .map(|t| {
                        let ns = t.as_nanosecond();
                        range.from_unix_ns.is_none_or(|f| ns >= f)
                            && range.to_unix_ns.is_none_or(|t| ns < t)
                    })
                    .unwrap_or(true);
                if !in_range {
                    return;
                }
                self.hosts.insert(host.clone());
                let (key, end) = match self.window_ms.filter(|&ms| ms > 0) {
                    Some(ms) => {
                        let ns = start
                            .parse::<jiff::Timestamp>()
                            .map_or(0, |t| t.as_nanosecond());
                        let len = i128::from(ms) * 1_000_000;
                        let from = ns.div_euclid(len) * len;
                        // As the window lines show times.
                        let show = |t: i128| crate::output::time::Rfc3339(t).to_string();
                        ((show(from), ms), show(from + len))
                    }
                    None => ((start, v["window_ms"].as_u64().unwrap_or(0)), s("end")),
                };
                let w = self.windows.entry(key).or_default();
                let lossy = v["cores_lost"].as_u64().unwrap_or(0) > 0
                    || v["losses"].as_array().is_some_and(|l| !l.is_empty())
                    || v["notables_dropped"].as_u64().unwrap_or(0) > 0;
                let h = w.hosts.entry(host).or_default();
                h.events += events_of(v);
                h.records += v["records"].as_u64().unwrap_or(0);
                h.lossy |= lossy;
                h.end = end;
                for e in v["process"]["execs"].as_array().into_iter().flatten() {
                    if let Some(exe) = e["exe"].as_str() {
                        *w.exes.entry(exe.to_string()).or_default() +=
                            e["events"].as_u64().unwrap_or(0);
                    }
                }
                for p in v["top_peers"].as_array().into_iter().flatten() {
                    let key = (
                        p["addr"].as_str().unwrap_or_default().to_string(),
                        p["port"].as_u64().unwrap_or(0),
                    );
                    *w.peers.entry(key).or_default() += p["events"].as_u64().unwrap_or(0);
                }
            }
            "correlation" => self.correlations.push((host, s("ts"), s("rule"))),
            _ => {}
        }
    }

    /// The fleet windows as JSON objects, in time order.
    fn lines(&self, top_n: usize) -> Vec<Value> {
        let top = |m: Vec<(Value, u64)>| -> Vec<Value> {
            let mut m = m;
            m.sort_by(|a, b| {
                b.1.cmp(&a.1)
                    .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
            });
            m.into_iter()
                .take(top_n)
                .map(|(mut k, n)| {
                    k["events"] = json!(n);
                    k
                })
                .collect()
        };
        self.windows
            .iter()
            .map(|((start, window_ms), w)| {
                let end = w.hosts.values().next().map(|h| h.end.clone()).unwrap_or_default();
                let missing: Vec<&String> =
                    self.hosts.iter().filter(|h| !w.hosts.contains_key(*h)).collect();
                let lossy: Vec<&String> =
                    w.hosts.iter().filter(|(_, h)| h.lossy).map(|(n, _)| n).collect();
                let mut corr: BTreeMap<(String, String), u64> = BTreeMap::new();
                for (host, ts, rule) in &self.correlations {
                    if w.hosts.contains_key(host) && ts >= start && *ts < end {
                        *corr.entry((host.clone(), rule.clone())).or_default() += 1;
                    }
                }
                json!({
                    "type": "fleet_window",
                    "start": start,
                    "end": end,
                    "window_ms": window_ms,
                    "hosts": w.hosts.keys().collect::<Vec<_>>(),
                    "missing": missing,
                    "lossy": lossy,
                    "events": w.hosts.values().map(|h| h.events).sum::<u64>(),
                    "records": w.hosts.values().map(|h| h.records).sum::<u64>(),
                    "top_hosts": top(w.hosts.iter().map(|(n, h)| (json!({"host": n}), h.events)).collect()),
                    "top_exes": top(w.exes.iter().map(|(e, n)| (json!({"exe": e}), *n)).collect()),
                    "top_peers": top(w.peers.iter().map(|((a, p), n)| (json!({"addr": a, "port": p}), *n)).collect()),
                    "correlations": corr.iter().map(|((h, r), n)| json!({"host": h, "rule": r, "count": n})).collect::<Vec<_>>(),
                })
            })
            .collect()
    }
}

/// Reads the fleet's stream and prints its windows (JSON lines, or a table).
pub fn fleet(args: &FleetArgs, config: &crate::Config) -> Result<ExitCode> {
    let mut cfg = config.export.nats.clone();
    cfg.url = args.url.clone();
    let settings = crate::export::nats::NatsSettings::load(&cfg)?
        .ok_or_else(|| Error::Invalid("fleet --nats: an empty URL".into()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("starting the fleet consumer's runtime"))?;
    let fleet = runtime.block_on(read(args, &settings))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let lines = fleet.lines(args.top_n);
    let written = if args.text {
        table(&mut out, &lines)
    } else {
        lines.iter().try_for_each(|l| writeln!(out, "{l}"))
    };
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("writing the fleet windows")(e))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

async fn read(args: &FleetArgs, s: &crate::export::nats::NatsSettings) -> Result<Fleet> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| Error::Invalid(format!("fleet: {what}: {e}"));
    let client = s
        .connect()
        .await
        .map_err(|e| fail(&format!("connecting to {}", s.url), &e))?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(&s.stream)
        .await
        .map_err(|e| fail(&format!("stream {}", s.stream), &e))?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            &args.durable,
            pull::Config {
                durable_name: Some(args.durable.clone()),
                filter_subjects: vec![
                    format!("{}.*.summary", s.subject_prefix),
                    format!("{}.*.correlation", s.subject_prefix),
                ],
                ..Default::default()
            },
        )
        .await
        .map_err(|e| fail(&format!("consumer {}", args.durable), &e))?;
    let mut fleet = Fleet {
        window_ms: args.window_ms,
        ..Fleet::default()
    };
    let deadline = args.duration.map(|d| Instant::now() + d);
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| fail("fetching", &e))?;
        let mut got = 0;
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| fail("fetching", &e))?;
            got += 1;
            let kind = m.subject.split('.').nth(2).unwrap_or_default().to_string();
            if let Ok(v) = serde_json::from_slice::<Value>(&m.payload) {
                fleet.add(&kind, &v, &args.range);
            }
            m.ack().await.map_err(|e| fail("acknowledging", &e))?;
        }
        let done = match deadline {
            Some(d) => Instant::now() >= d,
            None => got == 0,
        };
        if done {
            return Ok(fleet);
        }
    }
}

/// A table for people: one row per fleet window.
fn table(out: &mut impl Write, lines: &[Value]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<30} {:>5} {:>12} {:<20} {:<20} {:<40}",
        "WINDOW START", "HOSTS", "EVENTS", "MISSING", "LOSSY", "TOP EXE"
    )?;
    for l in lines {
        let names = |k: &str| {
            l[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        writeln!(
            out,
            "{:<30} {:>5} {:>12} {:<20} {:<20} {:<40}",
            l["start"].as_str().unwrap_or_default(),
            l["hosts"].as_array().map_or(0, Vec::len),
            l["events"].as_u64().unwrap_or(0),
            names("missing"),
            names("lossy"),
            l["top_exes"][0]["exe"].as_str().unwrap_or("-"),
        )?;
    }
    Ok(())
}
