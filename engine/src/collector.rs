//! The library API: run the collector inside a Rust program and take its events,
//! notable events, window summaries and correlations (docs/api.md).
//!
//! ```no_run
//! use std::time::Duration;
//! use engine::{Collector, Config, Message, api::Subscription};
//!
//! let mut config = Config::high_performance();
//! config.storage.data_dir = "/var/lib/kevent".into();
//! let collector = Collector::start(config)?;
//! let execs = collector.subscribe(Subscription {
//!     raw_events: true,
//!     kinds: vec!["process.exec".into()],
//!     ..Default::default()
//! })?;
//! while let Some(m) = execs.recv_timeout(Duration::from_secs(10)) {
//!     if let Message::Events(batch) = m {
//!         for e in batch {
//!             println!("{} {} {}", e.kind, e.pid, e.exe);
//!         }
//!     }
//! }
//! let report = collector.stop()?;
//! println!("{report}");
//! # Ok::<(), engine::Error>(())
//! ```
//!
//! A subscriber has a bounded queue (`export.grpc.client_queue` messages): a program
//! that does not keep up loses its own messages, counted and told in a
//! [`Message::Dropped`]; the engine never waits for it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::export::hub::{BadField, Client, Hub, Wants};
use crate::export::proto as pb;
use crate::run::{Embed, Summary, run_with};

/// The messages a subscriber receives (the gRPC API's, from `engine/proto/kevent.proto`).
pub mod api {
    pub use crate::export::proto::{
        Correlation, Drop, DropNotice, Event, Notable, Subscription, Summary,
    };
}

/// One message for a subscriber.
#[derive(Debug, Clone)]
pub enum Message {
    /// Raw events, enriched, in the order the cores wrote them.
    Events(Vec<api::Event>),
    /// A window summary (`json` is its line in docs/semantic.md).
    Summary(api::Summary),
    /// A notable event of the semantic path.
    Notable(api::Notable),
    /// A correlation group.
    Correlation(api::Correlation),
    /// What this subscriber lost since the last notice, by kind and reason.
    Dropped(api::DropNotice),
}

/// How long [`Collector::start`] waits for the kernel programs to attach.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a waiting subscriber looks at its queue.
const POLL: Duration = Duration::from_millis(2);

/// A running collector: its main job runs on threads of its own until
/// [`Collector::stop`].
#[derive(Debug)]
pub struct Collector {
    embed: Arc<Embed>,
    finished: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Summary>>>,
    client_queue: usize,
}

/// What a stopped collector did: the final report the `engine` command prints.
#[derive(Debug)]
pub struct Report {
    summary: Summary,
}

impl Report {
    /// Events written to the segments.
    pub fn written(&self) -> u64 {
        self.summary.user.written.iter().sum()
    }

    /// Whether every event the kernel hooks saw is accounted for (written, filtered,
    /// sampled out or dropped with a reason).
    pub fn accounted(&self) -> bool {
        let (hooks, accounted) = self.summary.identity();
        hooks == accounted
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        self.summary
            .write_report(&mut out)
            .map_err(|_| std::fmt::Error)?;
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

impl Collector {
    /// Checks `config` against this machine, then starts capturing; returns once the
    /// kernel programs are attached (or with the error that stopped it). Needs the
    /// privileges the `engine` command needs.
    pub fn start(config: Config) -> Result<Collector> {
        config.check(Path::new("Collector::start"))?;
        let embed = Arc::new(Embed::default());
        let finished = Arc::new(AtomicBool::new(false));
        let client_queue = config.export.grpc.client_queue;
        let thread = {
            let (embed, finished) = (embed.clone(), finished.clone());
            std::thread::Builder::new()
                .name("kevent".into())
                .spawn(move || {
                    let r = run_with(&config, None, false, Some(&embed));
                    finished.store(true, Ordering::Release);
                    r
                })
                .map_err(Error::io("spawning the collector"))?
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !embed.started.load(Ordering::Acquire) {
            if thread.is_finished() {
                return Err(match thread.join() {
                    Ok(Err(e)) => e,
                    Ok(Ok(_)) => Error::Invalid("the collector stopped as it started".into()),
                    Err(_) => Error::CorePanicked,
                });
            }
            if Instant::now() >= deadline {
                embed.stop.store(true, Ordering::Release);
                return Err(Error::Invalid(format!(
                    "the collector did not start within {} s",
                    START_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Collector {
            embed,
            finished,
            thread: Some(thread),
            client_queue,
        })
    }

    /// A new subscriber: what `subscription` asks for, from now on. An invalid field
    /// is an error naming it. Credits are not used here (a subscriber takes what it
    /// reads).
    pub fn subscribe(&self, subscription: api::Subscription) -> Result<Subscriber> {
        let wants = Wants::from_proto(&subscription).map_err(|BadField(m)| Error::Invalid(m))?;
        let client = self
            .embed
            .hub
            .add("library".into(), wants, i64::MAX, self.client_queue);
        Ok(Subscriber {
            client,
            hub: self.embed.hub.clone(),
            finished: self.finished.clone(),
        })
    }

    /// Stops capturing, drains the cores, seals the segments and returns the report.
    /// Subscribers can still read what was queued for them.
    pub fn stop(mut self) -> Result<Report> {
        self.embed.stop.store(true, Ordering::Release);
        let thread = self.thread.take().ok_or(Error::CorePanicked)?;
        let summary = thread.join().map_err(|_| Error::CorePanicked)??;
        Ok(Report { summary })
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.embed.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A subscription's end: its messages, in order. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscriber {
    client: Arc<Client>,
    hub: Arc<Hub>,
    finished: Arc<AtomicBool>,
}

impl Subscriber {
    /// The next message, if one is queued.
    pub fn try_recv(&self) -> Option<Message> {
        loop {
            let m = self.client.next()?;
            if let Some(m) = m.msg.and_then(message) {
                return Some(m);
            }
        }
    }

    /// The next message, waiting up to `timeout`; `None` when none came, or when the
    /// collector has stopped and nothing is left.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.try_recv() {
                return Some(m);
            }
            if Instant::now() >= deadline || self.finished.load(Ordering::Acquire) {
                return self.try_recv();
            }
            std::thread::sleep(POLL);
        }
    }

    /// Changes what this subscriber gets (an invalid field is an error naming it).
    pub fn reconfigure(&self, subscription: api::Subscription) -> Result<()> {
        let wants = Wants::from_proto(&subscription).map_err(|BadField(m)| Error::Invalid(m))?;
        if let Ok(mut w) = self.client.wants.lock() {
            *w = wants;
        }
        self.hub.refresh();
        Ok(())
    }
}

impl Iterator for &Subscriber {
    type Item = Message;

    /// Blocks for the next message; `None` once the collector has stopped and every
    /// queued message was taken.
    fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.try_recv() {
                return Some(m);
            }
            if self.finished.load(Ordering::Acquire) {
                return self.try_recv();
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.hub.remove(self.client.id);
    }
}

fn message(m: pb::server_message::Msg) -> Option<Message> {
    use pb::server_message::Msg;
    Some(match m {
        Msg::Events(b) => Message::Events(b.events),
        Msg::Summary(s) => Message::Summary(s),
        Msg::Notable(n) => Message::Notable(n),
        Msg::Correlation(c) => Message::Correlation(c),
        Msg::Drops(d) => Message::Dropped(d),
        Msg::Subscribed(_) | Msg::Heartbeat(_) => return None,
    })
}
