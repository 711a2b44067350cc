//! The metrics endpoint: `GET /metrics` in the OpenMetrics text format
//! (prometheus-client), read from the engine's telemetry at each scrape. Every name
//! starts with `kevent_`; labels are bounded (kind, reason, core, class; never a pid
//! or a path). A small HTTP/1.1 server on its own thread: scrapes are rare and short.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};
use crate::pipeline::{Latencies, PipelineStats};
use crate::sampler::Class;
use crate::telemetry::Telemetry;

/// Histogram bucket bounds (seconds) for event age and block write latency.
const BUCKETS_S: [f64; 14] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0,
];

type Labels = Vec<(&'static str, String)>;

/// See the module docs.
#[derive(Debug)]
struct EngineCollector(Arc<Telemetry>);

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, u64)],
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        let fam = m.encode_family(labels)?;
        ConstCounter::new(*v).encode(fam)?;
    }
    Ok(())
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, f64)],
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        let fam = m.encode_family(labels)?;
        ConstGauge::new(*v).encode(fam)?;
    }
    Ok(())
}

fn histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: Option<&hdrhistogram::Histogram<u64>>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    let (sum, count, buckets) = match h {
        Some(h) => {
            // Per bucket (the encoder makes them cumulative).
            let mut below = 0;
            let buckets: Vec<(f64, u64)> = BUCKETS_S
                .iter()
                .map(|&b| (b, h.count_between(0, (b * 1e9) as u64)))
                .chain(std::iter::once((f64::INFINITY, h.len())))
                .map(|(b, upto)| {
                    let n = upto.saturating_sub(below);
                    below = below.max(upto);
                    (b, n)
                })
                .collect();
            // hdrhistogram keeps no exact sum: the mean times the count.
            (h.mean() * h.len() as f64 / 1e9, h.len(), buckets)
        }
        None => (
            0.0,
            0,
            BUCKETS_S
                .iter()
                .map(|&b| (b, 0))
                .chain(std::iter::once((f64::INFINITY, 0)))
                .collect(),
        ),
    };
    m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

/// The perf category's log2 buckets of microseconds as they are (bucket k ends below
/// `2^(k+1)` us, the last is +Inf), for a histogram of `labels`.
fn log2_us_histogram(
    m: &mut prometheus_client::encoding::MetricEncoder,
    labels: &Labels,
    slots: &[u64],
    count: u64,
    sum_ns: u64,
) -> std::fmt::Result {
    let last = slots.len() - 1;
    let buckets: Vec<(f64, u64)> = slots
        .iter()
        .enumerate()
        .map(|(k, &n)| {
            let le = if k == last {
                f64::INFINITY
            } else {
                (1u64 << (k + 1)) as f64 / 1e6
            };
            (le, n)
        })
        .collect();
    m.encode_family(labels)?.encode_histogram::<NoLabelSet>(
        sum_ns as f64 / 1e9,
        count,
        &buckets,
        None,
    )
}

/// The perf category's histograms, cumulative since the start: run-queue latency per CPU,
/// block I/O latency (and bytes) per disk and operation; and traffic per protocol.
fn perf_metrics(e: &mut DescriptorEncoder, t: &Telemetry) -> std::fmt::Result {
    if let Ok(n) = t.net_bytes.lock()
        && n.iter().any(|&b| b > 0)
    {
        let series: Vec<(Labels, u64)> = [
            ("tcp", "sent"),
            ("tcp", "received"),
            ("udp", "sent"),
            ("udp", "received"),
        ]
        .iter()
        .zip(n.iter())
        .map(|(&(p, d), &v)| {
            (
                vec![("proto", p.to_string()), ("direction", d.to_string())],
                v,
            )
        })
        .collect();
        counter(
            e,
            "kevent_net_bytes",
            "Payload bytes sent and received by TCP and UDP sockets (perf category)",
            &series,
        )?;
    }
    if let Ok(runq) = t.runq.lock()
        && !runq.is_empty()
    {
        let mut m = e.encode_descriptor(
            "kevent_runq_latency_seconds",
            "Time runnable tasks waited for a CPU (perf category), by the CPU they then ran on",
            None,
            MetricType::Histogram,
        )?;
        for (cpu, h) in runq.iter().enumerate() {
            let labels: Labels = vec![("cpu", cpu.to_string())];
            log2_us_histogram(&mut m, &labels, &h.slots, h.count, h.sum_ns)?;
        }
    }
    if let Ok(runq) = t.runq_container.lock()
        && !runq.is_empty()
    {
        let mut m = e.encode_descriptor(
            "kevent_container_runq_latency_seconds",
            "Time runnable tasks waited for a CPU (perf category), by the tasks' container \
             (host: not in one)",
            None,
            MetricType::Histogram,
        )?;
        for (container, h) in runq.iter() {
            let labels: Labels = vec![("container", container.to_string())];
            log2_us_histogram(&mut m, &labels, &h.slots, h.count, h.sum_ns)?;
        }
    }
    if let Ok(io) = t.block_io.lock()
        && !io.is_empty()
    {
        let mut m = e.encode_descriptor(
            "kevent_block_io_latency_seconds",
            "Block requests from issue to completion (perf category), by disk and operation",
            None,
            MetricType::Histogram,
        )?;
        let mut bytes = Vec::new();
        for ((device, op), h) in io.iter() {
            let labels: Labels = vec![("device", device.clone()), ("op", op.clone())];
            log2_us_histogram(&mut m, &labels, &h.slots, h.count, h.sum_ns)?;
            bytes.push((labels, h.bytes));
        }
        counter(
            e,
            "kevent_block_io_bytes",
            "Bytes of completed block requests (perf category), by disk and operation",
            &bytes,
        )?;
    }
    Ok(())
}

fn kind_label(k: usize) -> Labels {
    vec![("kind", crate::output::kind_name(k as u16).into_owned())]
}

impl Collector for EngineCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let t = &self.0;
        // A gauge of 1 (the Prometheus convention; Prometheus's text parser has no info).
        let labels: Labels = vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("abi", bpf::abi::ABI_VERSION.to_string()),
            ("host", t.host.clone()),
        ];
        gauge(
            &mut e,
            "kevent_build_info",
            "The engine's version, record ABI and host",
            &[(labels, 1.0)],
        )?;
        let hooks: Vec<(Labels, f64)> = t
            .capture
            .hooks
            .iter()
            .map(|h| {
                (
                    vec![("kind", h.kind.to_string()), ("hook", h.hook.clone())],
                    1.0,
                )
            })
            .collect();
        gauge(
            &mut e,
            "kevent_capture_hook_info",
            "The kernel hook that supplies each kind on this kernel (1)",
            &hooks,
        )?;
        let unavailable: Vec<(Labels, f64)> = t
            .capture
            .unavailable
            .iter()
            .map(|u| {
                (
                    vec![
                        ("kind", u.kind.to_string()),
                        ("reason", u.reason.name().to_string()),
                    ],
                    1.0,
                )
            })
            .collect();
        gauge(
            &mut e,
            "kevent_capture_unavailable",
            "A configured kind this kernel does not give (1), and why: no_hook, verifier, attach",
            &unavailable,
        )?;
        gauge(
            &mut e,
            "kevent_uptime_seconds",
            "Seconds since the engine started",
            &[(vec![], t.started.elapsed().as_secs_f64())],
        )?;

        // Kernel side, summed over CPUs.
        let kernel = t.kernel_per_kind();
        let per_kind = |f: &dyn Fn(&bpf::abi::KindCounters) -> u64| -> Vec<(Labels, u64)> {
            kernel
                .iter()
                .enumerate()
                .filter(|(_, c)| f(c) > 0)
                .map(|(k, c)| (kind_label(k), f(c)))
                .collect()
        };
        counter(
            &mut e,
            "kevent_kernel_events_produced",
            "Events the kernel programs offered to their ring, by kind",
            &per_kind(&|c| c.produced),
        )?;
        counter(
            &mut e,
            "kevent_kernel_events_filtered",
            "Events the kernel filters (pid, cgroup) rejected, by kind",
            &per_kind(&|c| c.filtered),
        )?;

        // User space, summed over the core threads.
        let mut stats = PipelineStats::default();
        let mut latencies: Option<Latencies> = None;
        for c in &t.cores {
            if let Ok(s) = c.stats.lock()
                && let Some(s) = s.as_ref()
            {
                stats.add(s);
            }
            if let Ok(l) = c.latencies.lock()
                && let Some(l) = l.as_ref()
            {
                match &mut latencies {
                    None => latencies = Some(l.clone()),
                    Some(m) => {
                        let _ = m.block_write.add(&l.block_write);
                        let _ = m.event_age.add(&l.event_age);
                    }
                }
            }
        }
        let user = |a: &[u64]| -> Vec<(Labels, u64)> {
            a.iter()
                .enumerate()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| (kind_label(k), *v))
                .collect()
        };
        counter(
            &mut e,
            "kevent_events_delivered",
            "Records read from the kernel rings, by kind",
            &user(&stats.delivered),
        )?;
        counter(
            &mut e,
            "kevent_events_written",
            "Events written to the segments, by kind",
            &user(&stats.written),
        )?;
        counter(
            &mut e,
            "kevent_events_filtered",
            "Events the user-space filter rejected, by kind",
            &user(&stats.filtered),
        )?;
        let mut sampled: Vec<(Labels, u64)> = Vec::new();
        for (k, c) in kernel.iter().enumerate() {
            for (by, v) in [("kernel", c.sampled), ("engine", stats.sampled_out[k])] {
                if v > 0 {
                    let mut l = kind_label(k);
                    l.push(("by", by.to_string()));
                    sampled.push((l, v));
                }
            }
        }
        counter(
            &mut e,
            "kevent_events_sampled_out",
            "Events left out by sampling (their weight is carried by the kept ones), by kind and by where it was decided (kernel: before the ring; engine: after)",
            &sampled,
        )?;
        let mut dropped: Vec<(Labels, u64)> = Vec::new();
        for (k, c) in kernel.iter().enumerate() {
            for (reason, v) in [
                (storage::LossReason::KernelRingFull, c.ring_full),
                (storage::LossReason::KernelRateLimited, c.rate_limited),
            ] {
                if v > 0 {
                    let mut l = kind_label(k);
                    l.push(("reason", reason.name().to_string()));
                    dropped.push((l, v));
                }
            }
        }
        for (k, v) in stats.storage_dropped.iter().enumerate() {
            if *v > 0 {
                let mut l = kind_label(k);
                l.push((
                    "reason",
                    storage::LossReason::StorageError.name().to_string(),
                ));
                dropped.push((l, *v));
            }
        }
        counter(
            &mut e,
            "kevent_events_dropped",
            "Events lost, by kind and reason (docs/segment-format.md names the reasons)",
            &dropped,
        )?;
        counter(
            &mut e,
            "kevent_records_undecodable",
            "Records from the kernel that did not decode",
            &[(vec![], stats.undecodable)],
        )?;
        counter(
            &mut e,
            "kevent_enrich_copies_dropped",
            "Lifecycle events whose copy for the enrichment tables found its queue full",
            &[(vec![], stats.enrich_dropped)],
        )?;

        let mut fill = Vec::new();
        let mut sampling = Vec::new();
        let (mut rec_bytes, mut file_bytes) = (0u64, 0u64);
        for (i, c) in t.cores.iter().enumerate() {
            let core = i.to_string();
            fill.push((
                vec![("core", core.clone())],
                c.ring_fill_permille.load(Ordering::Relaxed) as f64 / 1000.0,
            ));
            let s = c.sampling.lock().map(|s| *s).unwrap_or([1; 4]);
            for (class, name) in [
                (Class::High, "high"),
                (Class::Normal, "normal"),
                (Class::Bulk, "bulk"),
            ] {
                sampling.push((
                    vec![("core", core.clone()), ("class", name.to_string())],
                    f64::from(s[class as usize]),
                ));
            }
            rec_bytes += c.record_bytes.load(Ordering::Relaxed);
            file_bytes += c.file_bytes.load(Ordering::Relaxed);
        }
        gauge(
            &mut e,
            "kevent_ring_fill_ratio",
            "Largest fill of a core's kernel rings over the last interval (0 to 1)",
            &fill,
        )?;
        gauge(
            &mut e,
            "kevent_sampling_one_in",
            "Sampling in force: 1 in N events kept, by core and class",
            &sampling,
        )?;
        histogram(
            &mut e,
            "kevent_event_age_seconds",
            "Kernel timestamp to the writer, per event",
            latencies.as_ref().map(|l| &l.event_age),
        )?;
        perf_metrics(&mut e, t)?;
        histogram(
            &mut e,
            "kevent_block_write_seconds",
            "Time to compress and submit a block",
            latencies.as_ref().map(|l| &l.block_write),
        )?;
        counter(
            &mut e,
            "kevent_record_bytes",
            "Bytes of records appended (before compression)",
            &[(vec![], rec_bytes)],
        )?;
        counter(
            &mut e,
            "kevent_file_bytes_written",
            "Bytes written to segment files (after compression)",
            &[(vec![], file_bytes)],
        )?;
        gauge(
            &mut e,
            "kevent_compression_ratio",
            "Record bytes over file bytes",
            &[(
                vec![],
                if file_bytes > 0 {
                    rec_bytes as f64 / file_bytes as f64
                } else {
                    0.0
                },
            )],
        )?;
        let (segments, disk) = segments_on_disk(&t.data_dir);
        gauge(
            &mut e,
            "kevent_segments",
            "Segment files in the data directory",
            &[(vec![], segments as f64)],
        )?;
        gauge(
            &mut e,
            "kevent_disk_bytes",
            "Bytes of segment files in the data directory",
            &[(vec![], disk as f64)],
        )?;
        gauge(
            &mut e,
            "kevent_retention_bytes_max",
            "The retention budget (storage.retention_bytes_max)",
            &[(vec![], t.retention_bytes_max as f64)],
        )?;
        counter(
            &mut e,
            "kevent_semantic_windows",
            "Window summaries emitted",
            &[(vec![], t.windows.load(Ordering::Relaxed))],
        )?;

        let clients = t.hub.clients();
        let client_drops: u64 = clients
            .iter()
            .map(|c| c.drops.load(Ordering::Relaxed))
            .sum();
        gauge(
            &mut e,
            "kevent_export_clients",
            "gRPC subscribers connected",
            &[(vec![], clients.len() as f64)],
        )?;
        counter(
            &mut e,
            "kevent_export_clients_connected",
            "gRPC subscribers since the start",
            &[(vec![], t.hub.connected_total.load(Ordering::Relaxed))],
        )?;
        counter(
            &mut e,
            "kevent_export_dropped",
            "Messages dropped for gRPC subscribers (each was told), by reason",
            &[(
                vec![("reason", super::hub::CLIENT_QUEUE_FULL.to_string())],
                t.hub.dropped_total.load(Ordering::Relaxed) + client_drops,
            )],
        )?;
        if let Some(n) = &t.nats {
            counter(
                &mut e,
                "kevent_nats_acked",
                "Summary lines acknowledged by the NATS stream",
                &[(vec![], n.acked.load(Ordering::Relaxed))],
            )?;
            counter(
                &mut e,
                "kevent_nats_duplicates",
                "Of them, lines the stream already had (dedup ids)",
                &[(vec![], n.duplicates.load(Ordering::Relaxed))],
            )?;
            counter(
                &mut e,
                "kevent_nats_dropped",
                "Summary lines dropped: the backlog was full while the server was away",
                &[(vec![], n.dropped.load(Ordering::Relaxed))],
            )?;
            counter(
                &mut e,
                "kevent_nats_retries",
                "Publishes sent again after a failure",
                &[(vec![], n.retries.load(Ordering::Relaxed))],
            )?;
            gauge(
                &mut e,
                "kevent_nats_connected",
                "1 once the publisher has reached the server and its stream",
                &[(
                    vec![],
                    if n.connected.load(Ordering::Relaxed) {
                        1.0
                    } else {
                        0.0
                    },
                )],
            )?;
        }
        if let Some(en) = &t.enrich {
            gauge(
                &mut e,
                "kevent_process_table_entries",
                "Processes in the enrichment table",
                &[(vec![], en.processes.load(Ordering::Relaxed) as f64)],
            )?;
            gauge(
                &mut e,
                "kevent_cgroup_table_entries",
                "Cgroups in the enrichment table",
                &[(vec![], en.cgroups.load(Ordering::Relaxed) as f64)],
            )?;
            counter(
                &mut e,
                "kevent_table_evictions",
                "Entries evicted from full enrichment tables",
                &[(vec![], en.evicted.load(Ordering::Relaxed))],
            )?;
        }
        Ok(())
    }
}

/// Segment files under the data directory and their bytes.
fn segments_on_disk(dir: &std::path::Path) -> (u64, u64) {
    let (mut n, mut bytes) = (0, 0);
    let Ok(streams) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for s in streams.flatten() {
        let Ok(files) = std::fs::read_dir(s.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".seg") || name.ends_with(".open") {
                n += 1;
                bytes += f.metadata().map_or(0, |m| m.len());
            }
        }
    }
    (n, bytes)
}

/// The running endpoint: dropping it (or [`MetricsServer::stop`]) ends it.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub local_addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `listen` (an error names the key and address) and serves on a thread.
    pub(crate) fn start(listen: &str, telemetry: Arc<Telemetry>) -> Result<MetricsServer> {
        let addr: SocketAddr = listen
            .parse()
            .map_err(|e| Error::Invalid(format!("export.metrics.listen: {listen:?}: {e}")))?;
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::Invalid(format!("export.metrics.listen: binding {addr}: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(Error::io("export.metrics.listen: a non-blocking socket"))?;
        let local_addr = listener
            .local_addr()
            .map_err(Error::io("export.metrics.listen: its address"))?;
        let mut registry = Registry::default();
        registry.register_collector(Box::new(EngineCollector(telemetry)));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((conn, _)) => serve(conn, &registry),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(e) => {
                            eprintln!("engine: metrics: accept: {e}");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })
            .map_err(Error::io("spawning the metrics thread"))?;
        Ok(MetricsServer {
            stop,
            thread: Some(thread),
            local_addr,
        })
    }

    pub(crate) fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Answers one HTTP/1.1 request (then closes the connection).
fn serve(mut conn: TcpStream, registry: &Registry) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let line = req.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) =
        if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(e) => (
                    "500 Internal Server Error",
                    "text/plain",
                    format!("encoding the metrics: {e}\n"),
                ),
            }
        } else {
            (
                "404 Not Found",
                "text/plain",
                "the metrics are at /metrics\n".to_string(),
            )
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body.as_bytes());
}
