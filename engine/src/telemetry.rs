//! What the running engine knows about itself, for the export API's `Status` call (and
//! the metrics endpoint): the per-core counters the core threads publish, the kernel
//! counters the control loop last read, and the rates it computed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bpf::abi::KindCounters;

use crate::core::CoreShared;
use crate::enrich::enricher::EnrichShared;
use crate::export::hub::Hub;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Telemetry {
    /// Which hook supplies each kind, and what this kernel does not give.
    pub capture: bpf::CaptureReport,
    pub started: Instant,
    pub host: String,
    /// The configuration in force, as TOML.
    pub config_toml: String,
    /// The CPU each core thread is pinned to.
    pub cpus: Vec<usize>,
    pub cores: Vec<Arc<CoreShared>>,
    pub enrich: Option<Arc<EnrichShared>>,
    pub hub: Arc<Hub>,
    pub data_dir: std::path::PathBuf,
    pub retention_bytes_max: u64,
    /// Window summaries the semantic thread emitted.
    pub windows: Arc<AtomicU64>,
    /// The NATS publisher's counters, when it is on.
    pub nats: Option<Arc<crate::export::nats::NatsStats>>,
    /// The kernel counters per CPU and kind, as last read by the control loop.
    pub kernel: Mutex<Vec<Vec<KindCounters>>>,
    /// Records written per second per core over the last interval.
    pub rates: Mutex<Vec<f64>>,
    /// (When, written per core) at the last rate update.
    last: Mutex<(Instant, Vec<u64>)>,
    /// Run-queue latency per CPU since the start (the perf category), as the perf
    /// aggregator wrote it out.
    pub runq: Mutex<Vec<bpf::abi::RunqHist>>,
    /// Run-queue latency per container of the waiting tasks (`host` outside containers,
    /// `unknown` for cgroups gone before they were looked up), at most
    /// [`CONTAINER_LABELS_MAX`] labels (the rest under `other`).
    pub runq_container: Mutex<std::collections::BTreeMap<Arc<str>, bpf::abi::RunqHist>>,
    /// Block I/O latency per (disk, operation) since the start (the perf category).
    pub block_io: Mutex<std::collections::BTreeMap<(String, String), bpf::abi::IoHist>>,
    /// Bytes sent and received per protocol since the start (the perf category):
    /// `[tcp sent, tcp received, udp sent, udp received]`.
    pub net_bytes: Mutex<[u64; 4]>,
}

/// Container labels of `kevent_container_runq_latency_seconds`, at most (a node runs
/// fewer containers at once; past it, new ones are counted under `other`).
pub(crate) const CONTAINER_LABELS_MAX: usize = 512;

impl Telemetry {
    /// Adds an interval's block I/O latency of one device and operation (the perf
    /// aggregator). Labels: the disk's name (its `major:minor` without one) and the op.
    pub(crate) fn block_io(&self, k: bpf::abi::IoKey, d: &bpf::abi::IoHist) {
        let Ok(mut all) = self.block_io.lock() else {
            return;
        };
        let name = bpf::abi::cstr_bytes(&d.disk);
        let device = if name.is_empty() {
            crate::perf::device_name(k.dev)
        } else {
            String::from_utf8_lossy(name).into_owned()
        };
        let h = all
            .entry((device, crate::perf::io_op_name(k.op).into_owned()))
            .or_default();
        for (x, y) in h.slots.iter_mut().zip(&d.slots) {
            *x += y;
        }
        h.count += d.count;
        h.sum_ns += d.sum_ns;
        h.bytes += d.bytes;
    }

    /// Adds an interval's traffic of one flow (the perf aggregator).
    pub(crate) fn net(&self, k: &bpf::abi::FlowKey, d: &bpf::abi::FlowValue) {
        let base = match k.protocol {
            6 => 0,
            17 => 2,
            _ => return,
        };
        if let Ok(mut n) = self.net_bytes.lock() {
            n[base] += d.bytes_sent;
            n[base + 1] += d.bytes_received;
        }
    }

    /// Adds an interval's run-queue latency of the tasks of one container (the perf
    /// aggregator).
    pub(crate) fn runq_container(&self, container: &Arc<str>, d: &bpf::abi::RunqHist) {
        let Ok(mut all) = self.runq_container.lock() else {
            return;
        };
        let key = if all.contains_key(container) || all.len() < CONTAINER_LABELS_MAX {
            container.clone()
        } else {
            Arc::from("other")
        };
        let h = all.entry(key).or_default();
        for (x, y) in h.slots.iter_mut().zip(&d.slots) {
            *x += y;
        }
        h.count += d.count;
        h.sum_ns += d.sum_ns;
    }

    /// Keeps the per-container run-queue series whose container `live` says exists
    /// (`host`, `other` and `unknown` stay).
    pub(crate) fn runq_container_retain(&self, live: impl Fn(&str) -> bool) {
        if let Ok(mut all) = self.runq_container.lock() {
            all.retain(|k, _| matches!(&**k, "host" | "other" | "unknown") || live(k));
        }
    }

    /// Adds an interval's run-queue latency on `cpu` (the perf aggregator).
    pub(crate) fn runq_cpu(&self, cpu: usize, d: &bpf::abi::RunqHist) {
        let Ok(mut all) = self.runq.lock() else {
            return;
        };
        if all.len() <= cpu {
            all.resize(cpu + 1, bpf::abi::RunqHist::default());
        }
        let h = &mut all[cpu];
        for (x, y) in h.slots.iter_mut().zip(&d.slots) {
            *x += y;
        }
        h.count += d.count;
        h.sum_ns += d.sum_ns;
    }

    pub(crate) fn new(
        config: &crate::Config,
        host: String,
        cores: Vec<Arc<CoreShared>>,
        enrich: Option<Arc<EnrichShared>>,
        hub: Arc<Hub>,
        windows: Arc<AtomicU64>,
    ) -> Telemetry {
        let n = cores.len();
        Telemetry {
            started: Instant::now(),
            host,
            config_toml: toml::to_string(config).unwrap_or_default(),
            cpus: config.core_cpus(),
            cores,
            enrich,
            hub,
            data_dir: config.storage.data_dir.clone(),
            retention_bytes_max: config.storage.retention_bytes_max,
            windows,
            nats: None,
            capture: bpf::CaptureReport::default(),
            kernel: Mutex::new(Vec::new()),
            rates: Mutex::new(vec![0.0; n]),
            last: Mutex::new((Instant::now(), vec![0; n])),
            runq: Mutex::new(Vec::new()),
            runq_container: Mutex::new(std::collections::BTreeMap::new()),
            block_io: Mutex::new(std::collections::BTreeMap::new()),
            net_bytes: Mutex::new([0; 4]),
        }
    }

    /// Records the kernel counters just read, and updates the rates (at most once a
    /// second).
    pub(crate) fn update(&self, kernel: &[Vec<KindCounters>]) {
        if let Ok(mut k) = self.kernel.lock() {
            k.clear();
            k.extend_from_slice(kernel);
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let secs = last.0.elapsed().as_secs_f64();
        if secs < 1.0 {
            return;
        }
        let now: Vec<u64> = self.written();
        if let Ok(mut r) = self.rates.lock() {
            *r = now
                .iter()
                .zip(&last.1)
                .map(|(n, b)| n.saturating_sub(*b) as f64 / secs)
                .collect();
        }
        *last = (Instant::now(), now);
    }

    /// Records written per core.
    pub(crate) fn written(&self) -> Vec<u64> {
        self.cores
            .iter()
            .map(|c| c.written.load(Ordering::Relaxed))
            .collect()
    }

    /// Kernel counters summed over CPUs, per kind.
    pub(crate) fn kernel_per_kind(&self) -> Vec<KindCounters> {
        let k = self.kernel.lock().map(|k| k.clone()).unwrap_or_default();
        let kinds = k.iter().map(Vec::len).max().unwrap_or(0);
        (0..kinds)
            .map(|i| {
                let mut sum: KindCounters = bytemuck::Zeroable::zeroed();
                for c in k.iter().filter_map(|cpu| cpu.get(i)) {
                    sum.produced += c.produced;
                    sum.ring_full += c.ring_full;
                    sum.filtered += c.filtered;
                    sum.rate_limited += c.rate_limited;
                    sum.unpaired += c.unpaired;
                }
                sum
            })
            .collect()
    }
}
