//! The gRPC server (`engine/proto/kevent.proto`, docs/api.md): a bidirectional
//! `Subscribe` stream per client over the export hub, and a unary `Status`. It runs on
//! its own threads (a small tokio runtime); nothing in it can slow a core thread.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use super::hub::{BadField, Client, Hub, Wants};
use super::proto as pb;
use super::proto::client_message::Msg as In;
use super::proto::server_message::Msg as Out;
use crate::error::{Error, Result};
use crate::sampler::Class;
use crate::telemetry::Telemetry;

/// Largest client message accepted (a subscription with long filter lists fits).
pub(crate) const MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// How often the server sends a heartbeat on every stream.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// `[export.grpc]` as the server needs it.
#[derive(Debug, Clone)]
pub(crate) struct GrpcSettings {
    pub listen: SocketAddr,
    pub token: Option<String>,
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    pub client_queue: usize,
}

impl GrpcSettings {
    /// Reads the token and TLS files named by the config (errors name the key).
    pub(crate) fn load(c: &crate::config::Grpc) -> Result<Option<GrpcSettings>> {
        if c.listen.is_empty() {
            return Ok(None);
        }
        let listen: SocketAddr = c
            .listen
            .parse()
            .map_err(|e| Error::Invalid(format!("export.grpc.listen: {:?}: {e}", c.listen)))?;
        let token = read_token(c)?;
        let tls = match (&c.tls_cert, &c.tls_key) {
            (Some(cert), Some(key)) => Some((read("tls_cert", cert)?, read("tls_key", key)?)),
            (None, None) => None,
            _ => {
                return Err(Error::Invalid(
                    "export.grpc.tls_cert and export.grpc.tls_key: give both or neither".into(),
                ));
            }
        };
        Ok(Some(GrpcSettings {
            listen,
            token,
            tls,
            client_queue: c.client_queue,
        }))
    }
}

/// Reads the file of config key `export.grpc.KEY` (an error names the key and the file).
pub(crate) fn read(key: &str, p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| Error::Invalid(format!("export.grpc.{key}: {}: {e}", p.display())))
}

/// The bearer token of `export.grpc.token_file`, trimmed (an empty file is an error).
pub(crate) fn read_token(c: &crate::config::Grpc) -> Result<Option<String>> {
    let Some(p) = &c.token_file else {
        return Ok(None);
    };
    let t = String::from_utf8_lossy(&read("token_file", p)?)
        .trim()
        .to_string();
    if t.is_empty() {
        return Err(Error::Invalid(format!(
            "export.grpc.token_file: {} is empty",
            p.display()
        )));
    }
    Ok(Some(t))
}

/// The running server: dropping it (or [`GrpcServer::stop`]) ends it.
#[derive(Debug)]
pub(crate) struct GrpcServer {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub local_addr: SocketAddr,
}

impl GrpcServer {
    /// Binds `settings.listen` (an error names the address) and serves on its own
    /// threads.
    pub(crate) fn start(settings: GrpcSettings, telemetry: Arc<Telemetry>) -> Result<GrpcServer> {
        let listener = std::net::TcpListener::bind(settings.listen).map_err(|e| {
            Error::Invalid(format!(
                "export.grpc.listen: binding {}: {e}",
                settings.listen
            ))
        })?;
        listener
            .set_nonblocking(true)
            .map_err(Error::io("export.grpc.listen: a non-blocking socket"))?;
        let local_addr = listener
            .local_addr()
            .map_err(Error::io("export.grpc.listen: its address"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("grpc")
            .enable_all()
            .build()
            .map_err(Error::io("starting the gRPC runtime"))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut builder = Server::builder();
        if let Some((cert, key)) = &settings.tls {
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
                .map_err(|e| Error::Invalid(format!("export.grpc.tls_cert/tls_key: {e}")))?;
        }
        let token = settings.token.clone();
        let service = Service {
            hub: telemetry.hub.clone(),
            telemetry,
            client_queue: settings.client_queue,
        };
        let svc = tonic::service::interceptor::InterceptedService::new(
            pb::collector_server::CollectorServer::new(service)
                .max_decoding_message_size(MESSAGE_BYTES_MAX),
            move |req: Request<()>| authorize(token.as_deref(), req),
        );
        let incoming = {
            let _guard = runtime.enter();
            let l = tokio::net::TcpListener::from_std(listener)
                .map_err(Error::io("export.grpc.listen: the socket"))?;
            TcpListenerStream::new(l)
        };
        let router = builder.add_service(svc);
        runtime.spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                eprintln!("engine: gRPC server stopped: {e}");
            }
        });
        Ok(GrpcServer {
            runtime: Some(runtime),
            shutdown: Some(tx),
            local_addr,
        })
    }

    /// Stops serving (open streams end) and joins its threads.
    pub(crate) fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

/// The bearer token check (when a token is configured); refusals are logged.
fn authorize(token: Option<&str>, req: Request<()>) -> std::result::Result<Request<()>, Status> {
    let Some(token) = token else {
        return Ok(req);
    };
    let given = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(token) {
        return Ok(req);
    }
    let peer = req
        .remote_addr()
        .map_or_else(|| "an unknown peer".to_string(), |a| a.to_string());
    let what = if given.is_some() { "a wrong" } else { "no" };
    eprintln!("engine: gRPC: refused a call from {peer}: {what} bearer token");
    Err(Status::unauthenticated(format!(
        "{what} bearer token (metadata \"authorization: Bearer <token>\")"
    )))
}

struct Service {
    hub: Arc<Hub>,
    telemetry: Arc<Telemetry>,
    client_queue: usize,
}

/// An error reading a client's stream, as the client should see it.
fn read_error(e: Status) -> Status {
    if e.code() == tonic::Code::OutOfRange || e.message().contains("too large") {
        Status::invalid_argument(format!(
            "client message: larger than {MESSAGE_BYTES_MAX} bytes ({})",
            e.message()
        ))
    } else {
        e
    }
}

/// Applies a control message; an error ends the stream with it.
fn control(c: &Client, hub: &Hub, m: pb::ClientMessage) -> std::result::Result<(), Status> {
    let edit = |f: &mut dyn FnMut(&mut super::hub::Queue)| {
        if let Ok(mut q) = c.queue.lock() {
            f(&mut q);
        }
        c.notify.notify_one();
    };
    match m.msg {
        Some(In::Credits(k)) => {
            if k.messages < 0 {
                return Err(Status::invalid_argument(format!(
                    "credits.messages: {} is negative",
                    k.messages
                )));
            }
            edit(&mut |q| q.credits = q.credits.saturating_add(k.messages));
        }
        Some(In::Pause(_)) => edit(&mut |q| q.paused = true),
        Some(In::Resume(_)) => edit(&mut |q| q.paused = false),
        Some(In::Reconfigure(s)) => {
            let w = Wants::from_proto(&s).map_err(|BadField(m)| {
                Status::invalid_argument(m.replacen("subscription", "reconfigure", 1))
            })?;
            if let Ok(mut cur) = c.wants.lock() {
                *cur = w;
            }
            hub.refresh();
            edit(&mut |q| q.credits = q.credits.saturating_add(s.credits));
        }
        Some(In::Subscribe(_)) => {
            return Err(Status::invalid_argument(
                "subscribe: this stream is subscribed already (send reconfigure to change it)",
            ));
        }
        Some(In::Heartbeat(_)) => {}
        None => {
            return Err(Status::invalid_argument(
                "client message: empty (no msg set)",
            ));
        }
    }
    Ok(())
}

fn heartbeat() -> pb::ServerMessage {
    let unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    pb::ServerMessage {
        msg: Some(Out::Heartbeat(pb::Heartbeat { unix_ns })),
    }
}

type Sent = std::result::Result<pb::ServerMessage, Status>;

/// One client's stream: the subscription, then control messages read alongside the
/// sending, until either side goes.
async fn serve_client(
    hub: Arc<Hub>,
    peer: String,
    mut inbound: Streaming<pb::ClientMessage>,
    tx: mpsc::Sender<Sent>,
    cap: usize,
) {
    let first = match inbound.message().await {
        Ok(Some(pb::ClientMessage {
            msg: Some(In::Subscribe(s)),
        })) => s,
        Ok(Some(_)) => {
            let _ = tx
                .send(Err(Status::invalid_argument(
                    "the first client message must be a subscription (ClientMessage.subscribe)",
                )))
                .await;
            return;
        }
        Ok(None) => return,
        Err(e) => {
            let _ = tx.send(Err(read_error(e))).await;
            return;
        }
    };
    let wants = match Wants::from_proto(&first) {
        Ok(w) => w,
        Err(BadField(m)) => {
            let _ = tx.send(Err(Status::invalid_argument(m))).await;
            return;
        }
    };
    let client = hub.add(peer, wants, first.credits, cap);
    eprintln!(
        "engine: gRPC: client {} ({}) subscribed",
        client.id, client.peer
    );
    let hello = pb::ServerMessage {
        msg: Some(Out::Subscribed(pb::Subscribed {
            client_id: client.id,
        })),
    };
    if tx.send(Ok(hello)).await.is_ok() {
        let reader = {
            let (c, hub, tx) = (client.clone(), hub.clone(), tx.clone());
            tokio::spawn(async move {
                loop {
                    match inbound.message().await {
                        Ok(Some(m)) => {
                            if let Err(s) = control(&c, &hub, m) {
                                let _ = tx.send(Err(s)).await;
                                break;
                            }
                        }
                        // The client sends no more; the stream goes on.
                        Ok(None) => break,
                        Err(e) => {
                            let _ = tx.send(Err(read_error(e))).await;
                            break;
                        }
                    }
                }
            })
        };
        let mut beat = tokio::time::interval(HEARTBEAT);
        beat.tick().await;
        'serve: loop {
            tokio::select! {
                _ = client.notify.notified() => {}
                _ = beat.tick() => {
                    if tx.send(Ok(heartbeat())).await.is_err() {
                        break 'serve;
                    }
                }
                _ = tx.closed() => break 'serve,
            }
            while let Some(m) = client.next() {
                if tx.send(Ok(m)).await.is_err() {
                    break 'serve;
                }
            }
        }
        reader.abort();
    }
    hub.remove(client.id);
    eprintln!(
        "engine: gRPC: client {} ({}) left: {} messages sent, {} dropped",
        client.id,
        client.peer,
        client.sent.load(std::sync::atomic::Ordering::Relaxed),
        client.drops.load(std::sync::atomic::Ordering::Relaxed)
    );
}

#[tonic::async_trait]
impl pb::collector_server::Collector for Service {
    type SubscribeStream = ReceiverStream<Sent>;

    async fn subscribe(
        &self,
        request: Request<Streaming<pb::ClientMessage>>,
    ) -> std::result::Result<Response<Self::SubscribeStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(String::new, |a| a.to_string());
        // Two messages in flight at most (a batch is up to 4096 events): the rest waits in
        // the client's bounded queue, where it is counted if it must be dropped.
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(serve_client(
            self.hub.clone(),
            peer,
            request.into_inner(),
            tx,
            self.client_queue,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> std::result::Result<Response<pb::StatusReply>, Status> {
        Ok(Response::new(status_reply(&self.telemetry)))
    }
}

/// The `Status` answer.
pub(crate) fn status_reply(t: &Telemetry) -> pb::StatusReply {
    let written = t.written();
    let rates = t.rates.lock().map(|r| r.clone()).unwrap_or_default();
    let cores = t
        .cores
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let s = c.sampling.lock().map(|s| *s).unwrap_or([1; 4]);
            pb::CoreStatus {
                core: i as u32,
                cpu: t.cpus.get(i).copied().unwrap_or(0) as u32,
                written: written[i],
                written_per_sec: rates.get(i).copied().unwrap_or(0.0),
                sampling_high: s[Class::High as usize],
                sampling_normal: s[Class::Normal as usize],
                sampling_bulk: s[Class::Bulk as usize],
                ring_fill: c
                    .ring_fill_permille
                    .load(std::sync::atomic::Ordering::Relaxed) as f64
                    / 1000.0,
            }
        })
        .collect();
    let mut drops = Vec::new();
    for (k, c) in t.kernel_per_kind().iter().enumerate() {
        let kind = crate::output::kind_name(k as u16).into_owned();
        for (reason, n) in [
            (storage::LossReason::KernelRingFull, c.ring_full),
            (storage::LossReason::KernelRateLimited, c.rate_limited),
        ] {
            if n > 0 {
                drops.push(pb::Drop {
                    kind: kind.clone(),
                    reason: reason.name().to_string(),
                    count: n,
                });
            }
        }
    }
    let storage: u64 = t
        .cores
        .iter()
        .map(|c| c.storage_dropped.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    if storage > 0 {
        drops.push(pb::Drop {
            kind: "all".into(),
            reason: storage::LossReason::StorageError.name().into(),
            count: storage,
        });
    }
    let clients = t.hub.clients();
    let export: u64 = t
        .hub
        .dropped_total
        .load(std::sync::atomic::Ordering::Relaxed)
        + clients
            .iter()
            .map(|c| c.drops.load(std::sync::atomic::Ordering::Relaxed))
            .sum::<u64>();
    if export > 0 {
        drops.push(pb::Drop {
            kind: "export".into(),
            reason: super::hub::CLIENT_QUEUE_FULL.into(),
            count: export,
        });
    }
    pb::StatusReply {
        version: env!("CARGO_PKG_VERSION").to_string(),
        abi: bpf::abi::ABI_VERSION,
        host: t.host.clone(),
        uptime_ms: t.started.elapsed().as_millis() as u64,
        config_toml: t.config_toml.clone(),
        cores,
        drops,
        subscribers: clients.len() as u32,
        hooks: t
            .capture
            .hooks
            .iter()
            .map(|h| pb::CaptureHook {
                kind: h.kind.into(),
                hook: h.hook.clone(),
            })
            .collect(),
        unavailable: t
            .capture
            .unavailable
            .iter()
            .map(|u| pb::CaptureUnavailable {
                kind: u.kind.into(),
                reason: u.reason.name().into(),
                detail: u.detail.clone(),
            })
            .collect(),
    }
}
