//! Fleet export to NATS JetStream: the summary stream's lines (windows, notable events,
//! correlations) published to `<prefix>.<host>.summary`, `<prefix>.<host>.notable.
//! <category>` and `<prefix>.<host>.correlation`, each with a `Nats-Msg-Id` made from
//! the host and the line's own identity (window start; notable time, core and
//! sequence; correlation rule, time and first member), so that publishing the same
//! line again, after a reconnect, a restart, or from `engine summarize --publish`, is
//! dropped by the stream's duplicate window.
//!
//! A publisher thread (its own small tokio runtime) keeps at most `in_flight` publishes
//! waiting for their acks and retries the ones that fail (the server went away) until
//! they are acknowledged. In front of it, a bounded backlog: a line that finds it full
//! is dropped and counted; nothing waits for the server (the semantic thread, and so
//! the cores, never do).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::Value;

use super::Sink;
use crate::error::{Error, Result};

/// How long the stream remembers message ids (publishing again within it is a no-op).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);
/// How a connect error starts when the server refused the credentials (no retry can
/// help: the publisher stops, and every line is counted as dropped).
pub(crate) const AUTH_REFUSED: &str = "the server refused the credentials (authorization)";

/// Wait between attempts while the server is unreachable.
const RETRY: Duration = Duration::from_millis(500);

/// `[export.nats]` as the publisher needs it (files read, secrets kept out of logs).
#[derive(Clone)]
pub(crate) struct NatsSettings {
    pub url: String,
    pub subject_prefix: String,
    pub stream: String,
    pub create_stream: bool,
    pub max_bytes: i64,
    pub max_age: Duration,
    pub replicas: usize,
    pub in_flight: usize,
    pub backlog: usize,
    user: Option<(String, String)>,
    token: Option<String>,
    nkey: Option<String>,
    credentials_file: Option<std::path::PathBuf>,
    tls_ca: Option<std::path::PathBuf>,
    tls_client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl std::fmt::Debug for NatsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a secret: only whether there is one.
        f.debug_struct("NatsSettings")
            .field("url", &self.url)
            .field("stream", &self.stream)
            .field("user", &self.user.as_ref().map(|u| &u.0))
            .field("token", &self.token.is_some())
            .field("nkey", &self.nkey.is_some())
            .finish()
    }
}

fn read_secret(key: &str, p: &std::path::Path) -> Result<String> {
    let s = std::fs::read_to_string(p)
        .map_err(|e| Error::Invalid(format!("export.nats.{key}: {}: {e}", p.display())))?;
    let s = s.trim().to_string();
    if s.is_empty() {
        return Err(Error::Invalid(format!(
            "export.nats.{key}: {} is empty",
            p.display()
        )));
    }
    Ok(s)
}

impl NatsSettings {
    /// Reads the credential files the config names (errors name the key, never the
    /// secret); `None` when `url` is empty.
    pub(crate) fn load(c: &crate::config::Nats) -> Result<Option<NatsSettings>> {
        if c.url.is_empty() {
            return Ok(None);
        }
        let user = match (&c.user, &c.password_file) {
            (Some(u), Some(p)) => Some((u.clone(), read_secret("password_file", p)?)),
            (None, None) => None,
            _ => {
                return Err(Error::Invalid(
                    "export.nats.user and export.nats.password_file: give both or neither".into(),
                ));
            }
        };
        let token = c
            .token_file
            .as_ref()
            .map(|p| read_secret("token_file", p))
            .transpose()?;
        let nkey = c
            .nkey_file
            .as_ref()
            .map(|p| read_secret("nkey_file", p))
            .transpose()?;
        let tls_client = match (&c.tls_cert, &c.tls_key) {
            (Some(a), Some(b)) => Some((a.clone(), b.clone())),
            (None, None) => None,
            _ => {
                return Err(Error::Invalid(
                    "export.nats.tls_cert and export.nats.tls_key: give both or neither".into(),
                ));
            }
        };
        Ok(Some(NatsSettings {
            url: c.url.clone(),
            subject_prefix: c.subject_prefix.clone(),
            stream: c.stream.clone(),
            create_stream: c.create_stream,
            max_bytes: c.max_bytes as i64,
            max_age: Duration::from_secs(c.max_age_s),
            replicas: c.replicas,
            in_flight: c.in_flight,
            backlog: c.backlog,
            user,
            token,
            nkey,
            credentials_file: c.credentials_file.clone(),
            tls_ca: c.tls_ca.clone(),
            tls_client,
        }))
    }

    pub(crate) async fn connect(&self) -> std::result::Result<async_nats::Client, String> {
        let mut o = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .max_reconnects(None);
        if let Some((u, p)) = &self.user {
            o = o.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &self.token {
            o = o.token(t.clone());
        }
        if let Some(k) = &self.nkey {
            o = o.nkey(k.clone());
        }
        if let Some(f) = &self.credentials_file {
            o = o
                .credentials_file(f)
                .await
                .map_err(|e| format!("export.nats.credentials_file: {e}"))?;
        }
        if let Some(ca) = &self.tls_ca {
            o = o.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((c, k)) = &self.tls_client {
            o = o.add_client_certificate(c.clone(), k.clone());
        }
        o.connect(self.url.as_str()).await.map_err(|e| {
            let refused = matches!(
                e.kind(),
                async_nats::ConnectErrorKind::AuthorizationViolation
                    | async_nats::ConnectErrorKind::Authentication
            );
            if refused {
                format!("{AUTH_REFUSED}: {e}")
            } else {
                e.to_string()
            }
        })
    }
}

/// What the publisher did (for the report and the metrics).
#[derive(Debug, Default)]
pub(crate) struct NatsStats {
    /// Lines acknowledged by the stream, and of them those it already had.
    pub acked: AtomicU64,
    pub duplicates: AtomicU64,
    /// Lines dropped because the backlog was full, or left unacknowledged at the stop.
    pub dropped: AtomicU64,
    /// Publishes that failed and were sent again.
    pub retries: AtomicU64,
    pub connected: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

impl NatsStats {
    pub(crate) fn describe(&self) -> String {
        format!(
            "nats: {} lines acknowledged ({} already in the stream), {} dropped, {} retried{}",
            self.acked.load(Ordering::Relaxed),
            self.duplicates.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
            self.last_error
                .lock()
                .ok()
                .and_then(|e| e.clone())
                .map_or_else(String::new, |e| format!("; last error: {e}"))
        )
    }
}

/// One line to publish.
#[derive(Debug, Clone)]
struct Outgoing {
    subject: String,
    id: String,
    payload: bytes::Bytes,
}

/// The publisher: a bounded backlog in front of a thread that publishes and retries.
#[derive(Debug)]
pub(crate) struct NatsPublisher {
    tx: Option<tokio::sync::mpsc::Sender<Outgoing>>,
    pub stats: Arc<NatsStats>,
    thread: Option<JoinHandle<()>>,
    prefix: String,
}

/// A subject token from a host name (no `.`, `*`, `>` or white space).
fn token(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

impl NatsPublisher {
    /// Starts the publisher thread; `drain` is how long the stop waits for acks.
    pub(crate) fn start(settings: NatsSettings, drain: Duration) -> Result<NatsPublisher> {
        let (tx, rx) = tokio::sync::mpsc::channel(settings.backlog.max(1));
        let stats = Arc::new(NatsStats::default());
        let prefix = settings.subject_prefix.clone();
        let st = stats.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::io("starting the NATS publisher's runtime"))?;
        let thread = std::thread::Builder::new()
            .name("nats".into())
            .spawn(move || runtime.block_on(publish_loop(settings, rx, st, drain)))
            .map_err(Error::io("spawning the NATS publisher"))?;
        Ok(NatsPublisher {
            tx: Some(tx),
            stats,
            thread: Some(thread),
            prefix,
        })
    }

    /// The subject and message id of a summary line (`None` for a line of no type).
    fn address(&self, host: &str, v: &Value) -> Option<(String, String)> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default();
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or_default();
        let (p, h) = (&self.prefix, token(host));
        Some(match v.get("type")?.as_str()? {
            "window" => (
                format!("{p}.{h}.summary"),
                format!("{h}.w.{}.{}", s("start"), n("window_ms")),
            ),
            "notable" => {
                let category = s("kind").split('.').next().unwrap_or("other").to_string();
                (
                    format!("{p}.{h}.notable.{}", token(&category)),
                    format!("{h}.n.{}.{}.{}", s("ts"), n("core"), n("seq")),
                )
            }
            "correlation" => {
                let first = v.get("members").and_then(|m| m.get(0));
                let m = |k: &str| {
                    first
                        .and_then(|f| f.get(k))
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                };
                (
                    format!("{p}.{h}.correlation"),
                    format!("{h}.c.{}.{}.{}.{}", s("rule"), s("ts"), m("core"), m("seq")),
                )
            }
            _ => return None,
        })
    }

    /// Queues a line without waiting; false (and counted) when the backlog is full.
    pub(crate) fn offer(&self, line: &[u8]) -> bool {
        let Some(out) = self.outgoing(line) else {
            return true;
        };
        match self.tx.as_ref().map(|tx| tx.try_send(out)) {
            Some(Ok(())) => true,
            _ => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a line, waiting for room (backfill: every line must go).
    pub(crate) fn send(&self, line: &[u8]) -> bool {
        let Some(out) = self.outgoing(line) else {
            return true;
        };
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.blocking_send(out).is_ok())
    }

    fn outgoing(&self, line: &[u8]) -> Option<Outgoing> {
        let v: Value = serde_json::from_slice(line).ok()?;
        let host = v.get("host").and_then(Value::as_str).unwrap_or("unknown");
        let (subject, id) = self.address(host, &v)?;
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        Some(Outgoing {
            subject,
            id,
            payload: bytes::Bytes::copy_from_slice(body),
        })
    }

    /// Closes the backlog and waits for what is queued to be acknowledged (or counted
    /// as dropped after the drain time).
    pub(crate) fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for NatsPublisher {
    fn drop(&mut self) {
        self.finish();
    }
}

fn note_error(stats: &NatsStats, e: String) {
    if let Ok(mut last) = stats.last_error.lock() {
        if last.as_deref() != Some(e.as_str()) {
            eprintln!("engine: nats: {e}");
        }
        *last = Some(e);
    }
}

async fn publish_loop(
    s: NatsSettings,
    mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
    stats: Arc<NatsStats>,
    drain: Duration,
) {
    let mut closed_at: Option<Instant> = None;
    let mut retry: VecDeque<Outgoing> = VecDeque::new();
    let mut inflight: VecDeque<(Outgoing, jetstream::context::PublishAckFuture)> = VecDeque::new();
    let mut js: Option<jetstream::Context> = None;
    loop {
        let past_drain = closed_at.is_some_and(|t| t.elapsed() >= drain);
        if past_drain {
            let left = (retry.len() + inflight.len()) as u64;
            let mut queued = 0u64;
            while rx.try_recv().is_ok() {
                queued += 1;
            }
            stats.dropped.fetch_add(left + queued, Ordering::Relaxed);
            return;
        }
        // Connected, with the stream in place.
        let Some(ctx) = js.clone() else {
            match s.connect().await {
                Ok(client) => {
                    let ctx = jetstream::new(client);
                    if s.create_stream {
                        let cfg = jetstream::stream::Config {
                            name: s.stream.clone(),
                            subjects: vec![format!("{}.>", s.subject_prefix)],
                            max_bytes: s.max_bytes,
                            max_age: s.max_age,
                            num_replicas: s.replicas,
                            duplicate_window: DUPLICATE_WINDOW,
                            ..Default::default()
                        };
                        if let Err(e) = ctx.get_or_create_stream(cfg).await {
                            note_error(&stats, format!("stream {}: {e}", s.stream));
                            tokio::time::sleep(RETRY).await;
                            if rx.is_closed() && closed_at.is_none() {
                                closed_at = Some(Instant::now());
                            }
                            continue;
                        }
                    }
                    stats.connected.store(true, Ordering::Release);
                    js = Some(ctx);
                }
                Err(e) => {
                    let refused = e.starts_with(AUTH_REFUSED);
                    note_error(&stats, format!("connecting to {}: {e}", s.url));
                    if refused {
                        // Counted as dropped, now and for every line offered later.
                        rx.close();
                        let mut n = 0u64;
                        while rx.try_recv().is_ok() {
                            n += 1;
                        }
                        stats.dropped.fetch_add(n, Ordering::Relaxed);
                        eprintln!(
                            "engine: nats: the publisher stops; summary lines are counted as dropped"
                        );
                        return;
                    }
                    tokio::time::sleep(RETRY).await;
                    if rx.is_closed() && closed_at.is_none() {
                        closed_at = Some(Instant::now());
                    }
                }
            }
            continue;
        };
        // Fill the window of publishes in flight: retries first, in order.
        while inflight.len() < s.in_flight.max(1) {
            let next = match retry.pop_front() {
                Some(m) => m,
                None => match rx.try_recv() {
                    Ok(m) => m,
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                        if !inflight.is_empty() {
                            break;
                        }
                        match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                            Ok(Some(m)) => m,
                            Ok(None) => {
                                closed_at.get_or_insert_with(Instant::now);
                                if retry.is_empty() {
                                    return;
                                }
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                        closed_at.get_or_insert_with(Instant::now);
                        break;
                    }
                },
            };
            let publish = jetstream::message::PublishMessage::build()
                .payload(next.payload.clone())
                .message_id(&next.id);
            match ctx.send_publish(next.subject.clone(), publish).await {
                Ok(ack) => inflight.push_back((next, ack)),
                Err(e) => {
                    note_error(&stats, format!("publishing: {e}"));
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    retry.push_front(next);
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            }
        }
        // The oldest ack.
        if let Some((m, ack)) = inflight.pop_front() {
            match ack.await {
                Ok(a) => {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                    if a.duplicate {
                        stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    note_error(&stats, format!("no ack: {e}"));
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    // Everything in flight goes again, in order (ids make it safe).
                    retry.push_back(m);
                    while let Some((m, _)) = inflight.pop_front() {
                        retry.push_back(m);
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        } else if closed_at.is_some() && retry.is_empty() && rx.is_empty() {
            return;
        }
    }
}

/// The semantic thread's sink: offers each line to the publisher.
#[derive(Debug)]
pub(crate) struct NatsSink {
    publisher: NatsPublisher,
}

impl NatsSink {
    pub(crate) fn new(publisher: NatsPublisher) -> NatsSink {
        NatsSink { publisher }
    }
}

impl Sink for NatsSink {
    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.publisher.offer(line);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
