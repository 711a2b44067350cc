//! The subscribers of the export API and what is queued for each. Producers (the export
//! thread's raw events, the semantic thread's lines) offer each message to every
//! client whose subscription wants it; each client has a bounded queue of its own, and
//! what does not fit is counted for it (by kind and reason) and told to it in a drop
//! notice. A slow client loses its own messages only; nothing here ever waits for a
//! client.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bpf::abi::KIND_MAX;
use bpf::{Category, Kind};

use super::proto as pb;

/// Events per batch at most, and by default.
pub(crate) const BATCH_MAX: usize = 4096;
pub(crate) const BATCH_DEFAULT: usize = 256;

/// Why a message was not delivered to a client.
pub(crate) const CLIENT_QUEUE_FULL: &str = "client_queue_full";
pub(crate) const EXPORT_QUEUE_FULL: &str = "export_queue_full";
pub(crate) const NOTABLE_DROPPED: &str = "notable_dropped";

/// A subscription that was checked: what a client wants.
#[derive(Debug, Clone, Default)]
pub(crate) struct Wants {
    /// Event kinds kept (all when `None`).
    kinds: Option<[bool; KIND_MAX]>,
    min_importance: f64,
    pids: Vec<u32>,
    /// (path, is a prefix).
    exes: Vec<(String, bool)>,
    containers: Vec<String>,
    paths: Vec<String>,
    pub raw: bool,
    pub notable: bool,
    pub summaries: bool,
    pub correlations: bool,
    pub max_batch: usize,
}

/// A subscription field that is not valid: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadField(pub String);

impl Wants {
    /// Checks a subscription; the first field that is not valid is named.
    pub(crate) fn from_proto(s: &pb::Subscription) -> Result<Wants, BadField> {
        let bad = |m: String| Err(BadField(m));
        let kinds = if s.kinds.is_empty() {
            None
        } else {
            let mut set = [false; KIND_MAX];
            for name in &s.kinds {
                if let Some(k) = Kind::from_name(name) {
                    set[k as usize] = true;
                } else if let Some(c) = Category::from_name(name) {
                    for k in Kind::ALL.iter().filter(|k| k.category() == c) {
                        set[*k as usize] = true;
                    }
                } else {
                    return bad(format!(
                        "subscription.kinds: {name:?} is neither an event kind (file.open, ...) nor a category (process, file, net, security, container, memory, syscall)"
                    ));
                }
            }
            Some(set)
        };
        if !(0.0..=1.0).contains(&s.min_importance) {
            return bad(format!(
                "subscription.min_importance: {} is not between 0 and 1",
                s.min_importance
            ));
        }
        let mut exes = Vec::new();
        for e in &s.exes {
            let (path, prefix) = match e.strip_suffix('*') {
                Some(p) => (p, true),
                None => (e.as_str(), false),
            };
            if !path.starts_with('/') {
                return bad(format!(
                    "subscription.exes: {e:?} is not an absolute path (a trailing * makes it a prefix)"
                ));
            }
            exes.push((path.to_string(), prefix));
        }
        for c in &s.containers {
            let hex = c.len() >= 12 && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_hexdigit());
            if c != "host" && !hex {
                return bad(format!(
                    "subscription.containers: {c:?} is neither \"host\" nor a container id (12 to 64 hex digits)"
                ));
            }
        }
        for p in &s.paths {
            if !p.starts_with('/') {
                return bad(format!("subscription.paths: {p:?} is not an absolute path"));
            }
        }
        if s.max_batch as usize > BATCH_MAX {
            return bad(format!(
                "subscription.max_batch: {} is above {BATCH_MAX}",
                s.max_batch
            ));
        }
        if s.credits < 0 {
            return bad(format!("subscription.credits: {} is negative", s.credits));
        }
        Ok(Wants {
            kinds,
            min_importance: s.min_importance,
            pids: s.pids.clone(),
            exes,
            containers: s
                .containers
                .iter()
                .map(|c| c.to_ascii_lowercase())
                .collect(),
            paths: s.paths.clone(),
            raw: s.raw_events,
            notable: s.notable_events,
            summaries: s.summaries,
            correlations: s.correlations,
            max_batch: match s.max_batch {
                0 => BATCH_DEFAULT,
                n => n as usize,
            },
        })
    }

    /// Whether events of `kind` may be wanted (before their content is known).
    pub(crate) fn kind(&self, kind: u16) -> bool {
        self.kinds
            .is_none_or(|k| k.get(kind as usize).copied().unwrap_or(false))
    }

    /// Whether an event is wanted.
    pub(crate) fn event(&self, e: &EventView<'_>) -> bool {
        self.kind(e.kind)
            && e.importance >= self.min_importance
            && (self.pids.is_empty() || self.pids.contains(&e.pid))
            && (self.exes.is_empty()
                || e.exe.is_some_and(|x| {
                    self.exes.iter().any(|(p, prefix)| {
                        if *prefix {
                            x.starts_with(p.as_str())
                        } else {
                            x == p
                        }
                    })
                }))
            && (self.containers.is_empty()
                || e.container
                    .is_some_and(|c| self.containers.iter().any(|w| c.starts_with(w.as_str()))))
            && (self.paths.is_empty()
                || e.paths
                    .iter()
                    .flatten()
                    .any(|p| self.paths.iter().any(|w| p.starts_with(w.as_bytes()))))
    }
}

/// What a filter looks at in an event.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EventView<'a> {
    pub kind: u16,
    pub pid: u32,
    pub importance: f64,
    pub exe: Option<&'a str>,
    /// Container id, or "host".
    pub container: Option<&'a str>,
    /// A file event's path and new path.
    pub paths: [Option<&'a [u8]>; 2],
}

/// A message queued for a client.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// Raw events are batched when sent.
    Event(Arc<pb::Event>),
    Other(Arc<pb::server_message::Msg>),
}

/// One client's queue and flow control.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub items: VecDeque<Item>,
    /// What was dropped since the last notice: (kind, reason) -> count.
    pub dropped: BTreeMap<(String, &'static str), u64>,
    pub credits: i64,
    pub paused: bool,
}

/// A subscriber.
#[derive(Debug)]
pub(crate) struct Client {
    pub id: u64,
    pub peer: String,
    pub wants: Mutex<Wants>,
    pub queue: Mutex<Queue>,
    /// Items a queue holds at most.
    pub cap: usize,
    pub notify: tokio::sync::Notify,
    /// Messages sent and dropped since it subscribed.
    pub sent: AtomicU64,
    pub drops: AtomicU64,
}

impl Client {
    /// Queues `item` (of `kind`, for the drop notice), or counts it dropped.
    fn offer(&self, kind: &str, item: Item) {
        let Ok(mut q) = self.queue.lock() else {
            return;
        };
        if q.items.len() >= self.cap {
            *q.dropped
                .entry((kind.to_string(), CLIENT_QUEUE_FULL))
                .or_insert(0) += 1;
            self.drops.fetch_add(1, Ordering::Relaxed);
        } else {
            q.items.push_back(item);
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Counts `n` messages of `kind` dropped for `reason` before they reached the queue.
    pub(crate) fn dropped(&self, kind: &str, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        if let Ok(mut q) = self.queue.lock() {
            *q.dropped.entry((kind.to_string(), reason)).or_insert(0) += n;
        }
        self.drops.fetch_add(n, Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// The next message to send, if the client may receive one now: a drop notice
    /// first, then a batch of consecutive events, or one other message. Takes a credit.
    pub(crate) fn next(&self) -> Option<pb::ServerMessage> {
        let mut q = self.queue.lock().ok()?;
        if q.paused || q.credits <= 0 {
            return None;
        }
        let msg = if !q.dropped.is_empty() {
            let dropped = std::mem::take(&mut q.dropped);
            let drops: Vec<pb::Drop> = dropped
                .into_iter()
                .map(|((kind, reason), count)| pb::Drop {
                    kind,
                    reason: reason.to_string(),
                    count,
                })
                .collect();
            pb::server_message::Msg::Drops(pb::DropNotice {
                total: drops.iter().map(|d| d.count).sum(),
                drops,
            })
        } else {
            match q.items.pop_front()? {
                Item::Other(m) => (*m).clone(),
                Item::Event(first) => {
                    let max = self.wants.lock().map_or(BATCH_DEFAULT, |w| w.max_batch);
                    let mut events = vec![(*first).clone()];
                    while events.len() < max {
                        match q.items.front() {
                            Some(Item::Event(_)) => {
                                if let Some(Item::Event(e)) = q.items.pop_front() {
                                    events.push((*e).clone());
                                }
                            }
                            _ => break,
                        }
                    }
                    pb::server_message::Msg::Events(pb::EventBatch { events })
                }
            }
        };
        q.credits -= 1;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Some(pb::ServerMessage { msg: Some(msg) })
    }
}

/// Every subscriber.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    clients: Mutex<Vec<Arc<Client>>>,
    next_id: AtomicU64,
    /// Whether any client wants raw events (the core threads copy them only then).
    pub raw_wanted: Arc<AtomicBool>,
    /// Clients that have come and gone, and drops over all clients.
    pub connected_total: AtomicU64,
    pub dropped_total: AtomicU64,
}

impl Hub {
    /// Adds a client with a queue of `cap` items.
    pub(crate) fn add(&self, peer: String, wants: Wants, credits: i64, cap: usize) -> Arc<Client> {
        let c = Arc::new(Client {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            peer,
            wants: Mutex::new(wants),
            queue: Mutex::new(Queue {
                credits,
                ..Queue::default()
            }),
            cap: cap.max(1),
            notify: tokio::sync::Notify::new(),
            sent: AtomicU64::new(0),
            drops: AtomicU64::new(0),
        });
        if let Ok(mut all) = self.clients.lock() {
            all.push(c.clone());
        }
        self.connected_total.fetch_add(1, Ordering::Relaxed);
        self.refresh();
        c
    }

    /// Removes a client (its queue goes with it).
    pub(crate) fn remove(&self, id: u64) {
        if let Ok(mut all) = self.clients.lock() {
            if let Some(c) = all.iter().find(|c| c.id == id) {
                self.dropped_total
                    .fetch_add(c.drops.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            all.retain(|c| c.id != id);
        }
        self.refresh();
    }

    /// Recomputes what the producers must provide (after a change of subscriptions).
    pub(crate) fn refresh(&self) {
        let raw = self
            .clients()
            .iter()
            .any(|c| c.wants.lock().is_ok_and(|w| w.raw));
        self.raw_wanted.store(raw, Ordering::Release);
    }

    pub(crate) fn clients(&self) -> Vec<Arc<Client>> {
        self.clients.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Calls `f` on every client whose subscription `wants` (under the clients' lock:
    /// no copy of the list per message; `f` takes a client's queue lock, never this one).
    fn each(&self, wants: impl Fn(&Wants) -> bool, mut f: impl FnMut(&Client)) {
        if let Ok(all) = self.clients.lock() {
            for c in all.iter() {
                if c.wants.lock().is_ok_and(|w| wants(&w)) {
                    f(c);
                }
            }
        }
    }

    /// Offers a raw event to every client that wants it.
    pub(crate) fn event(&self, view: &EventView<'_>, event: &Arc<pb::Event>) {
        self.each(
            |w| w.raw && w.event(view),
            |c| c.offer(&event.kind, Item::Event(event.clone())),
        );
    }

    /// Offers a notable event to every client that wants notable events and whose
    /// filters keep it.
    pub(crate) fn notable(&self, view: &EventView<'_>, msg: pb::server_message::Msg) {
        let kind = kind_name(view.kind);
        let msg = Arc::new(msg);
        self.each(
            |w| w.notable && w.event(view),
            |c| c.offer(&kind, Item::Other(msg.clone())),
        );
    }

    /// Offers a message every client of `want` gets (summaries, correlations).
    pub(crate) fn broadcast(
        &self,
        what: &str,
        want: fn(&Wants) -> bool,
        msg: pb::server_message::Msg,
    ) {
        let msg = Arc::new(msg);
        self.each(want, |c| c.offer(what, Item::Other(msg.clone())));
    }

    /// Tells the clients of `want` that `n` messages of `what` were dropped for `reason`.
    pub(crate) fn dropped_for(
        &self,
        what: &str,
        reason: &'static str,
        n: u64,
        want: fn(&Wants) -> bool,
    ) {
        self.each(want, |c| c.dropped(what, reason, n));
    }

    /// Tells the clients that want events of `kind` that `n` were dropped for `reason`
    /// (by `raw` or notable subscribers).
    pub(crate) fn dropped(&self, kind: u16, reason: &'static str, n: u64, raw: bool) {
        let name = kind_name(kind);
        self.each(
            |w| (if raw { w.raw } else { w.notable }) && w.kind(kind),
            |c| c.dropped(&name, reason, n),
        );
    }
}

fn kind_name(kind: u16) -> String {
    crate::output::kind_name(kind).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> pb::Subscription {
        pb::Subscription {
            raw_events: true,
            credits: 100,
            ..Default::default()
        }
    }

    #[test]
    fn bad_subscriptions_name_their_field() {
        for (edit, field) in [
            (
                (|s: &mut pb::Subscription| s.kinds = vec!["file.nope".into()])
                    as fn(&mut pb::Subscription),
                "subscription.kinds",
            ),
            (|s| s.min_importance = 1.5, "subscription.min_importance"),
            (
                |s| s.min_importance = f64::NAN,
                "subscription.min_importance",
            ),
            (|s| s.exes = vec!["bash".into()], "subscription.exes"),
            (
                |s| s.containers = vec!["xyz".into()],
                "subscription.containers",
            ),
            (|s| s.paths = vec!["tmp".into()], "subscription.paths"),
            (|s| s.max_batch = 5000, "subscription.max_batch"),
            (|s| s.credits = -1, "subscription.credits"),
        ] {
            let mut s = sub();
            edit(&mut s);
            let e = Wants::from_proto(&s).unwrap_err();
            assert!(e.0.starts_with(field), "{e:?}");
        }
    }

    #[test]
    fn filters_keep_what_they_name() {
        let mut s = sub();
        s.kinds = vec!["file".into(), "process.exec".into()];
        s.exes = vec!["/usr/bin/*".into()];
        s.paths = vec!["/etc/".into()];
        let w = Wants::from_proto(&s).unwrap();
        let mut v = EventView {
            kind: Kind::FileOpen as u16,
            pid: 7,
            importance: 0.5,
            exe: Some("/usr/bin/cat"),
            container: Some("host"),
            paths: [Some(b"/etc/passwd"), None],
        };
        assert!(w.event(&v));
        v.paths = [Some(b"/tmp/x"), Some(b"/etc/y")];
        assert!(w.event(&v), "a rename into /etc");
        v.paths = [Some(b"/tmp/x"), None];
        assert!(!w.event(&v));
        v.paths = [Some(b"/etc/x"), None];
        v.exe = Some("/bin/cat");
        assert!(!w.event(&v));
        v.exe = Some("/usr/bin/cat");
        v.kind = Kind::NetTcpConnect as u16;
        assert!(!w.event(&v));
    }

    #[test]
    fn a_full_queue_counts_drops_and_credits_bound_what_is_sent() {
        let hub = Hub::default();
        let mut s = sub();
        s.credits = 2;
        s.max_batch = 2;
        let c = hub.add("t".into(), Wants::from_proto(&s).unwrap(), 2, 3);
        assert!(hub.raw_wanted.load(Ordering::Relaxed));
        let ev = Arc::new(pb::Event {
            kind: "file.open".into(),
            ..Default::default()
        });
        let view = EventView {
            kind: Kind::FileOpen as u16,
            ..Default::default()
        };
        for _ in 0..5 {
            hub.event(&view, &ev);
        }
        // The notice comes first, then a batch of two; then no credits are left.
        let Some(pb::server_message::Msg::Drops(d)) = c.next().and_then(|m| m.msg) else {
            panic!("a drop notice");
        };
        assert_eq!(
            (d.total, d.drops[0].reason.as_str()),
            (2, CLIENT_QUEUE_FULL)
        );
        let Some(pb::server_message::Msg::Events(b)) = c.next().and_then(|m| m.msg) else {
            panic!("a batch");
        };
        assert_eq!(b.events.len(), 2);
        assert!(c.next().is_none(), "no credits left");
        c.queue.lock().unwrap().credits = 1;
        assert!(c.next().is_some());
        hub.remove(c.id);
        assert!(!hub.raw_wanted.load(Ordering::Relaxed));
    }
}
