//! A window's summary: the partials of every core merged, and its JSON line. The same
//! code runs live (the semantic thread) and offline (`engine summarize`), and every
//! order in the line is fixed (kinds by id, losses by reason then kind, top lists by
//! count then key), so the same partials give the same bytes.

use crate::output::json::{AddrValue, JsonWriter, Str};
use crate::output::{kind_name, reason_name};

use super::correlate::Correlator;
use super::partial::{FILE_OP_NAMES, Partial, PathTop, PeerKey, ProcessKey, TopMap};
use super::tables::TablesAt;
use crate::enrich::tables::{Enrichment, Tables};
use crate::perf::window::PerfWindow;

/// A notable event held for its window's lines: (ts, core, seq) for the order, then
/// the wall time, weight and record bytes.
type HeldNotable = ((u64, u32, u64), i128, u32, Vec<u8>);

/// What is known of one window once every core has closed it.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub window: u64,
    pub window_ns: u64,
    pub top_n: usize,
    /// Every delivered partial, merged.
    pub merged: Partial,
    /// Cores whose partial was merged, and cores whose partial could not be handed over
    /// (with the records it held).
    pub cores: u32,
    pub cores_lost: u32,
    pub records_lost: u64,
    /// The notable events of every delivered partial: (ts, core, seq) for the order,
    /// then the wall time, weight and record bytes.
    notables: Vec<HeldNotable>,
    pub notables_dropped: u64,
    /// The perf category's interval records that ended in the window, folded.
    pub perf: Option<Box<PerfWindow>>,
    /// Configured kinds the kernel did not give in this window (the run's
    /// `capture.unavailable` record): "not captured", not "nothing happened".
    pub unavailable: std::sync::Arc<[String]>,
}

impl Window {
    /// An empty window.
    pub(crate) fn new(window: u64, window_ns: u64, top_n: usize) -> Window {
        Window {
            window,
            window_ns,
            top_n,
            merged: Partial::new(window, 0),
            cores: 0,
            cores_lost: 0,
            records_lost: 0,
            notables: Vec::new(),
            notables_dropped: 0,
            perf: None,
            unavailable: std::sync::Arc::from([]),
        }
    }

    /// Adds core `core`'s delivered partial.
    pub(crate) fn add(&mut self, core: u32, p: &Partial) {
        self.cores += 1;
        self.merged.absorb(p);
        self.notables_dropped += p.notables_dropped;
        for n in &p.notables {
            self.notables.push((
                (n.ts_ns, core, n.seq),
                n.wall_ns,
                n.weight,
                p.notable_record(n).to_vec(),
            ));
        }
    }

    /// The window's notable events as JSON lines, in (timestamp, core, sequence) order:
    /// `{"type":"notable","host":...,"core":K,"seq":N,"importance":0.90,` then the
    /// event as `engine replay --format json` writes it, enrichment included when
    /// `tables` are given.
    pub(crate) fn write_notables(
        &mut self,
        host: &str,
        json: &mut JsonWriter,
        mut tables: Option<&mut dyn TablesAt>,
        correlator: &mut Correlator,
        mut line: impl FnMut(&[u8]),
    ) {
        let mut fired = Vec::new();
        self.notables.sort_unstable_by_key(|n| n.0);
        let mut head = JsonWriter::default();
        for ((ts, core, seq), wall, weight, bytes) in &self.notables {
            let Ok(ev) = bpf::decode(bytes) else {
                continue;
            };
            head.clear();
            head.open(None, b'{');
            head.field("type", Str(b"notable"));
            head.field("host", Str(host.as_bytes()));
            head.field("core", *core);
            head.field("seq", *seq);
            let imp = crate::sampler::importance(&ev, crate::sampler::class_of(&ev));
            head.field("importance", Fixed2(imp));
            json.event(&ev, *weight, *wall);
            match tables.as_deref_mut() {
                Some(t) => {
                    let e = t.at(*ts).lookup(ev.header);
                    json.enrichment(&ev, &e);
                    correlator.notable((*core, *seq), &ev, &e, *wall, &self.merged, &mut fired);
                }
                None => {
                    let e = Enrichment::default();
                    correlator.notable((*core, *seq), &ev, &e, *wall, &self.merged, &mut fired);
                }
            }
            let mut out = head.bytes().to_vec();
            out.push(b',');
            out.extend_from_slice(&json.bytes()[1..]);
            line(&out);
        }
        let end = (i128::from(self.window) + 1) * i128::from(self.window_ns);
        correlator.end_window(&self.merged, end, &mut fired);
        for f in fired {
            json.clear();
            json.open(None, b'{');
            json.field("type", Str(b"correlation"));
            json.field("rule", Str(f.rule.as_bytes()));
            json.field("host", Str(host.as_bytes()));
            json.time("ts", f.wall_ns);
            json.open(Some("members"), b'[');
            for (core, seq) in &f.members {
                json.open(None, b'{');
                json.field("core", *core);
                json.field("seq", *seq);
                json.close(b'}');
            }
            json.close(b']');
            json.field("description", Str(f.description.as_bytes()));
            json.close(b'}');
            json.newline();
            line(json.bytes());
        }
    }

    /// Counts a core whose partial of `records` records was lost.
    pub(crate) fn lost(&mut self, records: u64) {
        self.cores_lost += 1;
        self.records_lost += records;
    }

    /// Every line of the window, in order: the window's line, its notable events, its
    /// correlations. The enrichment tables (when given) are moved to `end_mono`, the
    /// window's end in the records' clock, after its notable events: the window's line
    /// names its top processes and cgroups from the tables as they are then (live and
    /// offline alike).
    pub(crate) fn write_lines(
        &mut self,
        host: &str,
        json: &mut JsonWriter,
        mut tables: Option<&mut dyn TablesAt>,
        correlator: &mut Correlator,
        end_mono: u64,
        mut line: impl FnMut(&[u8]),
    ) {
        let mut rest = Vec::new();
        let during: Option<&mut dyn TablesAt> = match &mut tables {
            Some(t) => Some(&mut **t),
            None => None,
        };
        self.write_notables(host, json, during, correlator, |l| rest.push(l.to_vec()));
        let at_end = tables.map(|t| t.at(end_mono));
        self.write_json(host, json, at_end);
        line(json.bytes());
        for l in &rest {
            line(l);
        }
    }

    /// The window's JSON line (with its newline) into `json` (cleared first); top
    /// processes and cgroups are named from `tables` when given.
    pub(crate) fn write_json(&self, host: &str, json: &mut JsonWriter, tables: Option<&Tables>) {
        let start = i128::from(self.window) * i128::from(self.window_ns);
        json.clear();
        json.open(None, b'{');
        json.field("type", Str(b"window"));
        json.time("start", start);
        json.time("end", start + i128::from(self.window_ns));
        json.field("host", Str(host.as_bytes()));
        json.field("window_ms", self.window_ns / 1_000_000);
        json.field("cores", self.cores);
        json.field("cores_lost", self.cores_lost);
        json.field("records_lost", self.records_lost);
        json.open(Some("unavailable"), b'[');
        for k in self.unavailable.iter() {
            json.element(Str(k.as_bytes()));
        }
        json.close(b']');
        let m = &self.merged;
        json.field("records", m.records);
        json.field("late", m.late);
        json.field("notables", self.notables.len() as u64);
        json.field("notables_dropped", self.notables_dropped);
        json.open(Some("kinds"), b'{');
        for (id, k) in m.kinds.iter().enumerate() {
            if k.stored == 0 {
                continue;
            }
            json.open(Some(&kind_name(id as u16)), b'{');
            json.field("events", k.events);
            json.field("stored", k.stored);
            json.field("max_weight", k.max_weight);
            json.close(b'}');
        }
        json.close(b'}');
        let mut losses: Vec<(&(u16, u16), &u64)> = m.losses.iter().collect();
        losses.sort_unstable();
        json.open(Some("losses"), b'[');
        for ((reason, kind), count) in losses {
            json.open(None, b'{');
            json.field("reason", Str(reason_name(*reason).as_bytes()));
            json.field("kind", Str(kind_name(*kind).as_bytes()));
            json.field("count", *count);
            json.close(b'}');
        }
        json.close(b']');
        top(
            json,
            "top_processes",
            &m.processes,
            self.top_n,
            true,
            |j, k| {
                j.field("pid", k.pid);
                j.field("comm", Str(bpf::abi::cstr_bytes(&k.comm)));
                // By pid (the header's pid is the process's; `comm` may be a thread's).
                if let Some(p) = tables.and_then(|t| t.process(k.pid)) {
                    j.field("exe", Str(p.exe.as_bytes()));
                }
            },
        );
        top(json, "top_cgroups", &m.cgroups, self.top_n, true, |j, k| {
            j.field("cgroup_id", *k);
            if let Some(c) = tables.and_then(|t| t.cgroup(*k)) {
                j.field("path", Str(c.cgroup.path.as_bytes()));
                j.container(&c.placement);
            }
        });
        paths(json, "top_files", "path", &m.files, self.top_n, true);
        top(json, "top_peers", &m.peers, self.top_n, true, peer);
        let n = self.top_n;
        json.open(Some("process"), b'{');
        paths(json, "execs", "exe", &m.execs, n, false);
        top(json, "exit_codes", &m.exit_codes, n, false, |j, c| {
            j.field("code", *c)
        });
        top(json, "exit_signals", &m.exit_signals, n, false, |j, s| {
            j.field("signal", *s)
        });
        json.close(b'}');
        json.open(Some("file"), b'{');
        let (dirs, other) = m.dirs.top_tagged::<5>(n);
        json.open(Some("dirs"), b'[');
        for (dir, events, ops) in dirs {
            json.open(None, b'{');
            json.field("dir", Str(dir.path()));
            json.field("events", events);
            for (name, c) in FILE_OP_NAMES.iter().zip(ops) {
                json.field(name, c);
            }
            json.close(b'}');
        }
        json.close(b']');
        json.field("dirs_other", other);
        top(json, "errnos", &m.file_errnos, n, false, |j, e| {
            j.field("errno", *e)
        });
        json.close(b'}');
        json.open(Some("net"), b'{');
        top(json, "failed_connects", &m.failed_connects, n, false, peer);
        top(json, "retransmits", &m.retransmits, n, false, peer);
        top(json, "resets", &m.resets, n, false, peer);
        top(json, "drop_reasons", &m.drop_reasons, n, false, |j, r| {
            j.field("reason", *r)
        });
        json.close(b'}');
        json.open(Some("memory"), b'{');
        top(json, "oom_victims", &m.oom_victims, n, false, |j, c| {
            j.field("comm", Str(bpf::abi::cstr_bytes(c)))
        });
        json.field("reclaim_stalls", m.reclaim_stalls);
        json.field("reclaim_ns", m.reclaim_ns);
        json.field("reclaim_p99_ns", m.reclaim.at(99, 100));
        top(json, "page_faults", &m.page_faults, n, false, |j, k| {
            j.field("pid", k.pid);
            j.field("comm", Str(bpf::abi::cstr_bytes(&k.comm)));
        });
        json.close(b'}');
        json.open(Some("security"), b'{');
        json.field("capability_denied", m.capability_denied);
        let process = |j: &mut JsonWriter, k: &ProcessKey| {
            j.field("pid", k.pid);
            j.field("comm", Str(bpf::abi::cstr_bytes(&k.comm)));
        };
        top(json, "id_changes", &m.id_changes, n, false, process);
        top(json, "ptrace", &m.ptraces, n, false, process);
        json.field("module_loads", m.module_loads);
        json.field("module_unloads", m.module_unloads);
        top(json, "bpf", &m.bpf_cmds, n, false, |j, c| {
            j.field("cmd", *c)
        });
        paths(json, "mounts", "target", &m.mounts, n, false);
        top(json, "signals", &m.signals, n, false, |j, s| {
            j.field("signal", *s);
            j.field("name", Str(signal_name(*s).as_bytes()));
        });
        json.close(b'}');
        let mut calls: Vec<&(u32, u64, super::partial::Latency)> = m.syscalls.iter().collect();
        calls.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        json.open(Some("syscalls"), b'[');
        for (id, count, lat) in calls.iter().take(n) {
            json.open(None, b'{');
            json.field("id", *id);
            json.field("events", *count);
            json.field("p50_ns", lat.at(50, 100));
            json.field("p99_ns", lat.at(99, 100));
            json.field("p999_ns", lat.at(999, 1000));
            json.close(b'}');
        }
        json.close(b']');
        let rest: u64 = calls.iter().skip(n).map(|c| c.1).sum::<u64>() + m.syscalls_other;
        json.field("syscalls_other", rest);
        if let Some(p) = &self.perf {
            p.write_json(json, n, tables);
        }
        json.close(b'}');
        json.newline();
    }
}

/// The name of a signal number (Linux x86-64), `SIG<n>` when not a standard one.
fn signal_name(sig: u32) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match NAMES.get(sig as usize) {
        Some(n) if !n.is_empty() => (*n).to_string(),
        _ => format!("SIG{sig}"),
    }
}

/// A number with two decimals (the same bytes on every machine).
struct Fixed2(f64);

impl crate::output::json::JsonValue for Fixed2 {
    fn write_to(&self, w: &mut JsonWriter) {
        w.raw_number(&format!("{:.2}", self.0));
    }
}

fn peer(j: &mut JsonWriter, k: &PeerKey) {
    j.field("addr", AddrValue(k.family, &k.addr));
    j.field("port", k.port);
}

/// `"NAME":[{...,"events":N}],"NAME_other":N` and, with `overflow`,
/// `"NAME_overflow":N` (records whose key did not fit a core's map).
fn top<K: Copy + Eq + std::hash::Hash + Ord>(
    json: &mut JsonWriter,
    name: &str,
    map: &TopMap<K>,
    n: usize,
    overflow: bool,
    key: impl Fn(&mut JsonWriter, &K),
) {
    let (items, other) = map.top(n);
    json.open(Some(name), b'[');
    for (k, count) in items {
        json.open(None, b'{');
        key(json, &k);
        json.field("events", count);
        json.close(b'}');
    }
    json.close(b']');
    json.field(&format!("{name}_other"), other);
    if overflow {
        json.field(&format!("{name}_overflow"), map.overflow);
    }
}

/// [`top`] for paths: `"NAME":[{"FIELD":"/path","events":N}]`, ...
fn paths(json: &mut JsonWriter, name: &str, field: &str, map: &PathTop, n: usize, overflow: bool) {
    let (items, other) = map.top(n);
    json.open(Some(name), b'[');
    for (k, count) in items {
        json.open(None, b'{');
        json.field(field, Str(k.path()));
        json.field("events", count);
        json.close(b'}');
    }
    json.close(b']');
    json.field(&format!("{name}_other"), other);
    if overflow {
        json.field(&format!("{name}_overflow"), map.overflow());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantic::partial::ProcessKey;

    fn partial(seed: u32) -> Partial {
        let mut p = Partial::new(7, 64);
        p.records = 10;
        p.kinds[10].stored = 3;
        p.kinds[10].events = 6;
        p.kinds[10].max_weight = 2;
        for i in 0..20u32 {
            let mut comm = [0u8; 16];
            comm[0] = b'a' + (i % 26) as u8;
            p.processes.add(
                ProcessKey {
                    pid: i * seed,
                    comm,
                },
                u64::from(i % 3 + 1),
            );
        }
        p.files.add(b"/x", 4);
        p.losses.insert((1, 10), 5);
        p
    }

    #[test]
    fn the_line_does_not_depend_on_the_order_partials_arrive_in() {
        let (a, b) = (partial(1), partial(3));
        let line = |first: &Partial, second: &Partial| {
            let mut w = Window::new(7, 1_000_000_000, 5);
            w.add(0, first);
            w.add(1, second);
            let mut j = JsonWriter::default();
            w.write_json("h", &mut j, None);
            String::from_utf8(j.bytes().to_vec()).unwrap()
        };
        let one = line(&a, &b);
        assert_eq!(one, line(&b, &a));
        let v: serde_json::Value = serde_json::from_str(&one).unwrap();
        assert_eq!(v["records"], 20);
        assert_eq!(v["kinds"]["file.open"]["events"], 12);
        assert_eq!(v["top_processes"].as_array().unwrap().len(), 5);
        // Ties broken by key: the list is sorted by count, then pid.
        let counts: Vec<u64> = v["top_processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["events"].as_u64().unwrap())
            .collect();
        assert!(counts.windows(2).all(|c| c[0] >= c[1]));
        assert_eq!(v["top_files"][0]["path"], "/x");
        assert_eq!(v["top_files"][0]["events"], 8);
        assert_eq!(v["losses"][0]["count"], 10);
        assert_eq!(v["start"], "1970-01-01T00:00:07.000000000Z");
    }
}
