//! Load generator: kernel activity of a known shape and amount, so that what a tracer
//! captured can be checked against what happened.
//!
//! ```text
//! loadgen syscalls [--rate N|max] [--seconds S] [--threads T]   getppid storm
//! loadgen exec     [--rate N|max] [--seconds S]                 fork + exec /bin/true
//! loadgen files    [--rate N|max] [--seconds S] [--dir D]       create, write, rename, unlink
//! loadgen tcp      [--rate N|max] [--seconds S]                 connect/accept/close on 127.0.0.1
//! loadgen mixed    [--seconds S]                                all of the above at once
//! ```
//!
//! Prints one JSON object: the profile, the seconds it ran, and per action the count
//! performed and the achieved rate.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

#[derive(Clone, Copy)]
enum Rate {
    Max,
    PerSec(u64),
}

/// Runs `op` at `rate` until `stop`; returns how many times it ran.
fn paced(
    rate: Rate,
    stop: &AtomicBool,
    mut op: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match rate {
            Rate::Max => {
                for _ in 0..256 {
                    op()?;
                }
                n += 256;
            }
            Rate::PerSec(r) => {
                let batch = (r / 1000).max(1);
                for _ in 0..batch {
                    op()?;
                }
                n += batch;
                let due = Duration::from_secs_f64(n as f64 / r as f64);
                if let Some(ahead) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
        }
    }
    Ok(n)
}

fn syscall_op() -> anyhow::Result<()> {
    // SAFETY: getppid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_getppid) };
    Ok(())
}

fn exec_op() -> anyhow::Result<()> {
    let status = Command::new("/bin/true")
        .status()
        .context("exec /bin/true")?;
    if !status.success() {
        bail!("/bin/true failed");
    }
    Ok(())
}

fn files_op(dir: &std::path::Path, i: &mut u64) -> anyhow::Result<()> {
    *i += 1;
    let a = dir.join(format!("loadgen-{}-{i}.tmp", std::process::id()));
    let b = a.with_extension("done");
    std::fs::write(&a, b"loadgen").context("create")?;
    std::fs::rename(&a, &b).context("rename")?;
    std::fs::remove_file(&b).context("unlink")?;
    Ok(())
}

struct Tcp {
    listener: TcpListener,
    port: u16,
}

impl Tcp {
    fn new() -> anyhow::Result<Tcp> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        Ok(Tcp { listener, port })
    }

    fn op(&self) -> anyhow::Result<()> {
        let c = TcpStream::connect(("127.0.0.1", self.port))?;
        let (s, _) = self.listener.accept()?;
        drop(c);
        drop(s);
        Ok(())
    }
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn rate(args: &[String]) -> anyhow::Result<Rate> {
    match arg(args, "--rate") {
        None | Some("max") => Ok(Rate::Max),
        Some(r) => Ok(Rate::PerSec(
            r.parse().with_context(|| format!("--rate: {r:?}"))?,
        )),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let profile = args.get(1).map(String::as_str).unwrap_or("");
    let seconds: f64 = arg(&args, "--seconds")
        .map_or(Ok(5.0), str::parse)
        .context("--seconds")?;
    let threads: usize = arg(&args, "--threads")
        .map_or(Ok(1), str::parse)
        .context("--threads")?;
    let dir = std::path::PathBuf::from(arg(&args, "--dir").unwrap_or("/tmp"));
    let rate = rate(&args)?;
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<(&str, Arc<AtomicU64>)> = match profile {
        "syscalls" | "exec" | "files" | "tcp" => vec![(profile, Arc::new(AtomicU64::new(0)))],
        "mixed" => ["syscalls", "exec", "files", "tcp"]
            .into_iter()
            .map(|p| (p, Arc::new(AtomicU64::new(0))))
            .collect(),
        other => bail!(
            "usage: loadgen syscalls|exec|files|tcp|mixed [--rate N|max] [--seconds S] [--threads T] [--dir D] (got {other:?})"
        ),
    };
    let started = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for (name, count) in &counts {
            let n_threads = if *name == "syscalls" { threads } else { 1 };
            for _ in 0..n_threads {
                let stop = stop.clone();
                let count = count.clone();
                let dir = dir.clone();
                let name = *name;
                let r = if profile == "mixed" && name != "syscalls" {
                    Rate::PerSec(200)
                } else {
                    rate
                };
                handles.push(s.spawn(move || -> anyhow::Result<()> {
                    let n = match name {
                        "syscalls" => paced(r, &stop, syscall_op)?,
                        "exec" => paced(r, &stop, exec_op)?,
                        "files" => {
                            let mut i = 0;
                            paced(r, &stop, || files_op(&dir, &mut i))?
                        }
                        _ => {
                            let tcp = Tcp::new()?;
                            paced(r, &stop, || tcp.op())?
                        }
                    };
                    count.fetch_add(n, Ordering::Relaxed);
                    Ok(())
                }));
            }
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        }
        Ok(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut out = format!("{{\"profile\":\"{profile}\",\"seconds\":{elapsed:.3}");
    for (name, count) in &counts {
        let n = count.load(Ordering::Relaxed);
        out.push_str(&format!(
            ",\"{name}\":{{\"count\":{n},\"per_sec\":{:.0}}}",
            n as f64 / elapsed
        ));
    }
    out.push('}');
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{out}")?;
    Ok(())
}
