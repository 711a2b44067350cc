//! The summary stream's lines (windows, notable events, correlations) as export
//! messages: a [`Sink`] of the semantic thread that offers each line to the
//! subscribers that want it.

use std::sync::Arc;

use serde_json::Value;

use super::Sink;
use super::hub::{EventView, Hub, NOTABLE_DROPPED, Wants};
use super::proto as pb;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct HubSink {
    hub: Arc<Hub>,
}

impl HubSink {
    pub(crate) fn new(hub: Arc<Hub>) -> HubSink {
        HubSink { hub }
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl Sink for HubSink {
    fn line(&mut self, line: &[u8]) -> std::io::Result<()> {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return Ok(());
        };
        let json = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line)).into_owned();
        match v.get("type").and_then(Value::as_str) {
            Some("window") => {
                let dropped = num(&v, "notables_dropped");
                if dropped > 0 {
                    self.hub
                        .dropped_for("notable", NOTABLE_DROPPED, dropped, |w| w.notable);
                }
                self.hub.broadcast(
                    "summary",
                    |w: &Wants| w.summaries,
                    pb::server_message::Msg::Summary(pb::Summary {
                        start: text(&v, "start"),
                        end: text(&v, "end"),
                        json,
                    }),
                );
            }
            Some("notable") => {
                let kind = text(&v, "kind");
                let container = v
                    .get("container")
                    .and_then(|c| c.get("id"))
                    .and_then(Value::as_str);
                let exe = v.get("exe").and_then(Value::as_str);
                let path = v.get("path").and_then(Value::as_str);
                let new_path = v.get("new_path").and_then(Value::as_str);
                let importance = v.get("importance").and_then(Value::as_f64).unwrap_or(0.0);
                let view = EventView {
                    kind: bpf::Kind::from_name(&kind).map_or(u16::MAX, |k| k as u16),
                    pid: num(&v, "pid") as u32,
                    importance,
                    exe,
                    container,
                    paths: [path.map(str::as_bytes), new_path.map(str::as_bytes)],
                };
                let event = pb::Event {
                    unix_ns: text(&v, "ts")
                        .parse::<jiff::Timestamp>()
                        .ok()
                        .and_then(|t| u64::try_from(t.as_nanosecond()).ok())
                        .unwrap_or(0),
                    kind: kind.clone(),
                    cpu: num(&v, "cpu") as u32,
                    pid: num(&v, "pid") as u32,
                    tid: num(&v, "tid") as u32,
                    uid: num(&v, "uid") as u32,
                    gid: num(&v, "gid") as u32,
                    comm: text(&v, "comm"),
                    cgroup_id: num(&v, "cgroup_id"),
                    weight: num(&v, "weight") as u32,
                    exe: exe.unwrap_or_default().to_string(),
                    container: container.unwrap_or_default().to_string(),
                    importance,
                    json: json.clone(),
                };
                let msg = pb::server_message::Msg::Notable(pb::Notable {
                    event: Some(event),
                    core: num(&v, "core") as u32,
                    seq: num(&v, "seq"),
                });
                self.hub.notable(&view, msg);
            }
            Some("correlation") => {
                self.hub.broadcast(
                    "correlation",
                    |w: &Wants| w.correlations,
                    pb::server_message::Msg::Correlation(pb::Correlation {
                        rule: text(&v, "rule"),
                        description: text(&v, "description"),
                        json,
                    }),
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
