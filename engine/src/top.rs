//! `engine top`: a live view of what the machine is doing, fed by a running engine's gRPC
//! API (docs/api.md): `Status` once a second (per-core rates, ring fill, sampling in
//! force, drops by reason) and a `Subscribe` stream of the window summaries and notable
//! events (events/s by kind, top processes and containers, losses, the notable events
//! scrolling). `q` (or Esc, Ctrl-C) quits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, List, ListItem, Paragraph, Row, Table};
use serde_json::Value;
use tonic::metadata::MetadataValue;

use crate::error::{Error, Result};
use crate::export::proto as pb;

/// A Status call's answer waits this long at most.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The stream is given up (and made again) after this long without a message (the engine
/// sends a heartbeat every 5 s).
const STREAM_SILENCE_MAX: Duration = Duration::from_secs(15);

/// Notable events kept for the scrolling list.
const NOTABLES_KEPT: usize = 200;

/// Where and how to reach the engine.
#[derive(Debug, Clone)]
pub struct TopArgs {
    /// `host:port` or a URL (`http://`, `https://`).
    pub endpoint: String,
    /// The bearer token (`export.grpc.token_file`).
    pub token: Option<String>,
    /// The CA to trust for `https` (the server's own certificate, `export.grpc.tls_cert`).
    pub ca: Option<Vec<u8>>,
}

impl TopArgs {
    /// From `--endpoint`, else the config's `export.grpc.listen` (with its token and TLS
    /// certificate).
    pub fn from(endpoint: Option<String>, config: &crate::Config) -> Result<TopArgs> {
        let g = &config.export.grpc;
        // The token and certificate files as the server reads them (only the certificate,
        // not its key, which the viewer need not be able to read).
        let token = crate::export::grpc::read_token(g)?;
        let ca = match &g.tls_cert {
            Some(p) => Some(crate::export::grpc::read("tls_cert", p)?),
            None => None,
        };
        let endpoint = match endpoint {
            Some(e) => e,
            None if !g.listen.is_empty() => g.listen.replace("0.0.0.0", "127.0.0.1"),
            None => {
                return Err(Error::Invalid(
                    "top: no endpoint: give --endpoint HOST:PORT, or a config whose \
                     export.grpc.listen is set (the engine's gRPC API)"
                        .into(),
                ));
            }
        };
        Ok(TopArgs {
            endpoint,
            token,
            ca,
        })
    }

    fn url(&self) -> String {
        if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else if self.ca.is_some() {
            format!("https://{}", self.endpoint)
        } else {
            format!("http://{}", self.endpoint)
        }
    }
}

/// One row of a top list.
#[derive(Debug, Clone, Default)]
struct TopRow {
    name: String,
    detail: String,
    events: u64,
}

/// What the view shows, updated by the feed.
#[derive(Debug, Default)]
struct State {
    status: Option<pb::StatusReply>,
    /// The last window: its length, and per kind (events, stored, max weight).
    window_ms: u64,
    window_start: String,
    kinds: Vec<(String, u64, u64, u64)>,
    records: u64,
    processes: Vec<TopRow>,
    containers: Vec<TopRow>,
    losses: Vec<(String, String, u64)>,
    windows: u64,
    notables: VecDeque<String>,
    /// The connection's state: an error is shown until the next success.
    error: Option<String>,
    connected: bool,
}

impl State {
    fn window(&mut self, json: &str) {
        let Ok(w) = serde_json::from_str::<Value>(json) else {
            return;
        };
        self.windows += 1;
        self.window_ms = w["window_ms"].as_u64().unwrap_or(0);
        self.window_start = w["start"].as_str().unwrap_or("").to_string();
        self.records = w["records"].as_u64().unwrap_or(0);
        self.kinds = w["kinds"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v["events"].as_u64().unwrap_or(0),
                            v["stored"].as_u64().unwrap_or(0),
                            v["max_weight"].as_u64().unwrap_or(1),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rows = |key: &str, f: &dyn Fn(&Value) -> (String, String)| -> Vec<TopRow> {
            w[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| {
                            let (name, detail) = f(v);
                            TopRow {
                                name,
                                detail,
                                events: v["events"].as_u64().unwrap_or(0),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        self.processes = rows("top_processes", &|v| {
            (
                format!(
                    "{} {}",
                    v["pid"].as_u64().unwrap_or(0),
                    v["comm"].as_str().unwrap_or("")
                ),
                v["exe"].as_str().unwrap_or("").to_string(),
            )
        });
        self.containers = rows("top_cgroups", &|v| {
            let id = v["container"]["id"].as_str().unwrap_or("");
            let name = match id {
                "" => format!("cgroup {}", v["cgroup_id"].as_u64().unwrap_or(0)),
                "host" => "host".to_string(),
                id => {
                    let runtime = v["container"]["runtime"].as_str().unwrap_or("");
                    format!("{} {runtime}", short(id))
                }
            };
            (name, v["path"].as_str().unwrap_or("").to_string())
        });
        self.losses = w["losses"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| {
                        (
                            l["reason"].as_str().unwrap_or("").to_string(),
                            l["kind"].as_str().unwrap_or("").to_string(),
                            l["count"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
    }

    fn notable(&mut self, n: &pb::Notable) {
        let Some(e) = &n.event else {
            return;
        };
        let time = jiff::Timestamp::from_nanosecond(i128::from(e.unix_ns))
            .map(|t| t.to_string())
            .unwrap_or_default();
        // hh:mm:ss.mmm of the RFC 3339 time.
        let clock = time.get(11..23).unwrap_or(&time);
        let container = match e.container.as_str() {
            "" | "host" => String::new(),
            c => format!(" [{}]", short(c)),
        };
        let line = format!(
            "{clock} {:.2} {:<22} {} {}{container} {}",
            e.importance, e.kind, e.pid, e.comm, e.exe
        );
        self.notables.push_front(line);
        self.notables.truncate(NOTABLES_KEPT);
    }
}

/// The first 12 characters of a container id (as `docker ps` shows them).
fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `engine top`: runs until `q`.
pub fn top(args: TopArgs) -> Result<()> {
    let state = Arc::new(Mutex::new(State::default()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(Error::io("starting the gRPC client"))?;
    runtime.spawn(feed(args.clone(), state.clone()));
    let mut terminal = ratatui::try_init().map_err(Error::io("opening the terminal"))?;
    let result = ui(&mut terminal, &args, &state);
    ratatui::restore();
    runtime.shutdown_background();
    result
}

fn ui(terminal: &mut ratatui::DefaultTerminal, args: &TopArgs, state: &Mutex<State>) -> Result<()> {
    let mut last = Instant::now() - Duration::from_secs(1);
    loop {
        if last.elapsed() >= Duration::from_millis(250) {
            last = Instant::now();
            let s = state
                .lock()
                .map_err(|_| Error::Invalid("top: state poisoned".into()))?;
            terminal
                .draw(|f| draw(f, args, &s))
                .map_err(Error::io("drawing"))?;
        }
        if event::poll(Duration::from_millis(100)).map_err(Error::io("reading keys"))?
            && let Event::Key(k) = event::read().map_err(Error::io("reading keys"))?
            && k.kind == KeyEventKind::Press
        {
            let ctrl_c =
                k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
            if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                return Ok(());
            }
        }
    }
}

/// Keeps `state` fed: Status every second, and the subscription; reconnects after a
/// failure (shown on the view).
async fn feed(args: TopArgs, state: Arc<Mutex<State>>) {
    loop {
        if let Err(e) = feed_once(&args, &state).await
            && let Ok(mut s) = state.lock()
        {
            s.error = Some(e);
            s.connected = false;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn feed_once(args: &TopArgs, state: &Arc<Mutex<State>>) -> std::result::Result<(), String> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(args.url())
        .map_err(|e| format!("{}: {e}", args.endpoint))?
        .connect_timeout(Duration::from_secs(3))
        // A peer that vanishes without closing the connection is noticed.
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    if let Some(ca) = &args.ca {
        endpoint = endpoint
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            )
            .map_err(|e| format!("TLS: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting to {}: {e}", args.endpoint))?;
    let bearer: Option<MetadataValue<_>> = match &args.token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| "the token is not valid in a header".to_string())?,
        ),
        None => None,
    };
    let auth = move |mut req: tonic::Request<()>| {
        if let Some(b) = &bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        Ok(req)
    };
    let mut client = pb::collector_client::CollectorClient::with_interceptor(channel, auth);

    // The subscription: summaries and notable events, credits renewed as they are used.
    // Generous: a burst of notable events beyond them is dropped by the server for this
    // client (counted in the drops as client_queue_full), not queued.
    const CREDITS: i64 = 4096;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ClientMessage>(16);
    tx.send(pb::ClientMessage {
        msg: Some(pb::client_message::Msg::Subscribe(pb::Subscription {
            notable_events: true,
            summaries: true,
            credits: CREDITS,
            ..Default::default()
        })),
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut stream = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("Subscribe: {}", e.message()))?
        .into_inner();
    if let Ok(mut s) = state.lock() {
        s.error = None;
        s.connected = true;
    }
    let mut status_every = tokio::time::interval(Duration::from_secs(1));
    let mut used = 0i64;
    loop {
        tokio::select! {
            _ = status_every.tick() => {
                let reply = tokio::time::timeout(CALL_TIMEOUT, client.status(pb::StatusRequest {}))
                    .await
                    .map_err(|_| "Status: no answer".to_string())?
                    .map_err(|e| format!("Status: {}", e.message()))?;
                if let Ok(mut s) = state.lock() {
                    s.status = Some(reply.into_inner());
                }
            }
            msg = tokio::time::timeout(STREAM_SILENCE_MAX, stream.message()) => {
                let msg = msg
                    .map_err(|_| "Subscribe: silent (no heartbeat)".to_string())?
                    .map_err(|e| format!("Subscribe: {}", e.message()))?
                    .ok_or_else(|| "the engine ended the stream".to_string())?;
                let counted = !matches!(msg.msg, Some(pb::server_message::Msg::Heartbeat(_)));
                if let Ok(mut s) = state.lock() {
                    match &msg.msg {
                        Some(pb::server_message::Msg::Summary(w)) => s.window(&w.json),
                        Some(pb::server_message::Msg::Notable(n)) => s.notable(n),
                        _ => {}
                    }
                }
                if counted {
                    used += 1;
                    if used >= CREDITS / 2 {
                        tx.send(pb::ClientMessage {
                            msg: Some(pb::client_message::Msg::Credits(pb::Credits { messages: used })),
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                        used = 0;
                    }
                }
            }
        }
    }
}

fn draw(f: &mut ratatui::Frame<'_>, args: &TopArgs, s: &State) {
    let area = f.area();
    let [head, upper, middle, lower, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(8),
        Constraint::Min(7),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(area);
    header(f, head, args, s);
    let [kinds, cores] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(upper);
    kinds_table(f, kinds, s);
    cores_table(f, cores, s);
    let [procs, conts] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(middle);
    top_table(
        f,
        procs,
        "Top processes (events, last window)",
        &s.processes,
    );
    top_table(f, conts, "Top containers and cgroups", &s.containers);
    let [drops, notables] =
        Layout::horizontal([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(lower);
    drops_table(f, drops, s);
    let items: Vec<ListItem<'_>> = s
        .notables
        .iter()
        .map(|l| ListItem::new(l.as_str()))
        .collect();
    f.render_widget(
        List::new(items).block(
            Block::default()
                .borders(Borders::ALL)
                .title("Notable events (newest first)"),
        ),
        notables,
    );
    f.render_widget(
        Paragraph::new("q quit").style(Style::default().add_modifier(Modifier::DIM)),
        foot,
    );
}

fn header(f: &mut ratatui::Frame<'_>, area: Rect, args: &TopArgs, s: &State) {
    let first = match &s.status {
        Some(st) => format!(
            "engine top: {} (engine {}, ABI {}), up {}s, {} subscriber(s), {}",
            st.host,
            st.version,
            st.abi,
            st.uptime_ms / 1000,
            st.subscribers,
            args.endpoint
        ),
        None => format!("engine top: connecting to {}", args.endpoint),
    };
    let second = match &s.error {
        Some(e) => format!("not connected: {e} (retrying)"),
        None if s.windows == 0 => "waiting for the first window summary".to_string(),
        None => format!(
            "window {} ({} ms): {} records; {} windows seen",
            s.window_start, s.window_ms, s.records, s.windows
        ),
    };
    f.render_widget(
        Paragraph::new(vec![
            Line::from(first).style(Style::default().add_modifier(Modifier::BOLD)),
            Line::from(second),
        ]),
        area,
    );
}

fn per_sec(events: u64, window_ms: u64) -> String {
    if window_ms == 0 {
        return "-".into();
    }
    format!("{:.1}", events as f64 * 1000.0 / window_ms as f64)
}

fn kinds_table(f: &mut ratatui::Frame<'_>, area: Rect, s: &State) {
    let rows = s.kinds.iter().map(|(k, events, stored, w)| {
        Row::new(vec![
            Cell::from(k.clone()),
            Cell::from(per_sec(*events, s.window_ms)),
            Cell::from(stored.to_string()),
            Cell::from(if *w > 1 {
                format!("1 in {w}")
            } else {
                String::new()
            }),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(24),
                Constraint::Length(12),
                Constraint::Length(10),
                Constraint::Length(10),
            ],
        )
        .header(
            Row::new(vec!["kind", "events/s", "stored", "sampled"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title("Events by kind (last window)"),
        ),
        area,
    );
}

fn cores_table(f: &mut ratatui::Frame<'_>, area: Rect, s: &State) {
    let cores = s
        .status
        .as_ref()
        .map(|st| st.cores.as_slice())
        .unwrap_or(&[]);
    let rows = cores.iter().map(|c| {
        Row::new(vec![
            Cell::from(c.core.to_string()),
            Cell::from(c.cpu.to_string()),
            Cell::from(format!("{:.0}", c.written_per_sec)),
            Cell::from(format!("{:.0}%", c.ring_fill * 100.0)),
            Cell::from(format!(
                "{}/{}/{}",
                c.sampling_high, c.sampling_normal, c.sampling_bulk
            )),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(5),
                Constraint::Length(4),
                Constraint::Length(11),
                Constraint::Length(10),
                Constraint::Length(12),
            ],
        )
        .header(
            Row::new(vec![
                "core",
                "cpu",
                "written/s",
                "ring fill",
                "1-in-N h/n/b",
            ])
            .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title("Cores (sampling in force)"),
        ),
        area,
    );
}

fn top_table(f: &mut ratatui::Frame<'_>, area: Rect, title: &str, rows: &[TopRow]) {
    let body = rows.iter().map(|r| {
        Row::new(vec![
            Cell::from(r.events.to_string()),
            Cell::from(r.name.clone()),
            Cell::from(r.detail.clone()),
        ])
    });
    f.render_widget(
        Table::new(
            body,
            [
                Constraint::Length(9),
                Constraint::Length(28),
                Constraint::Min(10),
            ],
        )
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(title.to_string()),
        ),
        area,
    );
}

fn drops_table(f: &mut ratatui::Frame<'_>, area: Rect, s: &State) {
    // Since the start (Status), by reason; the last window's losses by reason and kind.
    let mut lines: Vec<Line<'_>> = Vec::new();
    let mut by_reason: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    if let Some(st) = &s.status {
        for d in &st.drops {
            *by_reason.entry(d.reason.as_str()).or_default() += d.count;
        }
    }
    if by_reason.is_empty() {
        lines.push(Line::from("none since the start"));
    }
    for (reason, n) in by_reason {
        lines.push(Line::from(format!("{reason}: {n}")));
    }
    for (reason, kind, n) in &s.losses {
        lines.push(Line::from(format!("last window: {reason} {kind}: {n}")));
    }
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title("Drops by reason"),
        ),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_line_fills_the_view_and_odd_names_do_not_break_it() {
        let mut s = State::default();
        s.window(
            r#"{"type":"window","start":"2026-11-27T05:00:00.000000000Z","window_ms":2000,"records":9,
            "kinds":{"file.open":{"events":40,"stored":10,"max_weight":4},"process.exec":{"events":2,"stored":2,"max_weight":1}},
            "losses":[{"reason":"kernel_ring_full","kind":"file.open","count":3}],
            "top_processes":[{"pid":7,"comm":"café","exe":"/usr/bin/x","events":5}],
            "top_cgroups":[{"cgroup_id":9,"path":"/k","container":{"id":"ééééééééééééééé","runtime":"docker"},"events":4},
                           {"cgroup_id":1,"container":{"id":"host"},"events":1},{"cgroup_id":3,"events":1}]}"#,
        );
        assert_eq!(s.window_ms, 2000);
        assert_eq!(s.kinds[0], ("file.open".to_string(), 40, 10, 4));
        assert_eq!(per_sec(40, s.window_ms), "20.0");
        assert_eq!(s.processes[0].name, "7 café");
        assert_eq!(s.containers[0].name, "éééééééééééé docker");
        assert_eq!(s.containers[1].name, "host");
        assert_eq!(s.containers[2].name, "cgroup 3");
        assert_eq!(
            s.losses,
            [("kernel_ring_full".into(), "file.open".into(), 3)]
        );
        // Not JSON: ignored.
        s.window("{");
        assert_eq!(s.windows, 1);
    }
}
