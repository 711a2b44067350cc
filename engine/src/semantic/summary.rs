//! A window's summary: the partials of every core merged, and its JSON line. The same
//! code runs live (the semantic thread) and offline (`engine summarize`), and every
//! order in the line is fixed (kinds by id, losses by reason then kind, top lists by
//! count then key), so the same partials give the same bytes.

use crate::output::json::{AddrValue, JsonWriter, Str};
use crate::output::{kind_name, reason_name};

use super::partial::{Partial, TopMap};

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
        }
    }

    /// Adds a core's delivered partial.
    pub(crate) fn add(&mut self, p: &Partial) {
        self.cores += 1;
        self.merged.absorb(p);
    }

    /// Counts a core whose partial of `records` records was lost.
    pub(crate) fn lost(&mut self, records: u64) {
        self.cores_lost += 1;
        self.records_lost += records;
    }

    /// The window's JSON line (with its newline) into `json` (cleared first).
    pub(crate) fn write_json(&self, host: &str, json: &mut JsonWriter) {
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
        let m = &self.merged;
        json.field("records", m.records);
        json.field("late", m.late);
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
        top(json, "processes", &m.processes, self.top_n, |j, k| {
            j.field("pid", k.pid);
            j.field("comm", Str(bpf::abi::cstr_bytes(&k.comm)));
        });
        top(json, "cgroups", &m.cgroups, self.top_n, |j, k| {
            j.field("cgroup_id", *k);
        });
        top(json, "files", &m.files, self.top_n, |j, k| {
            j.field("path", Str(k.path()));
        });
        top(json, "peers", &m.peers, self.top_n, |j, k| {
            j.field("addr", AddrValue(k.family, &k.addr));
            j.field("port", k.port);
        });
        json.close(b'}');
        json.newline();
    }
}

/// `"top_NAME":[{...,"events":N}],"top_NAME_other":N,"top_NAME_overflow":N`.
fn top<K: Copy + Eq + std::hash::Hash + Ord>(
    json: &mut JsonWriter,
    name: &str,
    map: &TopMap<K>,
    n: usize,
    key: impl Fn(&mut JsonWriter, &K),
) {
    let (items, other) = map.top(n);
    json.open(Some(&format!("top_{name}")), b'[');
    for (k, count) in items {
        json.open(None, b'{');
        key(json, &k);
        json.field("events", count);
        json.close(b'}');
    }
    json.close(b']');
    json.field(&format!("top_{name}_other"), other);
    json.field(&format!("top_{name}_overflow"), map.overflow);
}
