//! The `engine` command line: clap structs, and one call per subcommand.
//!
//! Options of the main job (`--config`, `-o/--set`, `--data-dir`, `--duration`,
//! `--quiet`) go before any subcommand (`-o` also before `validate`); `--duration` is also an option of `tail` (where it means the same),
//! so both `engine tail --duration 10` and `engine --duration 10 tail` work. Options that
//! mean nothing to a subcommand are refused rather than ignored: after it by clap, before
//! it by [`run`].

use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::Override;
use crate::error::{Error, Result};
use crate::offline::replay::{Format, ReplayArgs};
use crate::offline::time::TimeRange;

/// Kernel event collector: captures kernel events through eBPF into indexed,
/// compressed segment files, and replays them.
#[derive(Debug, Parser)]
#[command(name = "engine", version)]
pub struct Cli {
    /// Config file (TOML); without it, the embedded default (configs/default.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where segments go (overrides storage.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Override a config key by its dotted TOML path, after the file: `-o
    /// semantic.min_importance=0.6` (repeatable; the value is TOML, or a string).
    /// For the main job and `validate`.
    #[arg(short = 'o', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<Override>,
    #[command(flatten)]
    pub live: LiveArgs,
    /// No status lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

/// Options of the live commands (the main job and `tail`).
#[derive(Debug, Clone, Copy, Args)]
pub struct LiveArgs {
    /// Stop after this many seconds (default: until SIGINT, SIGTERM or SIGQUIT).
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub duration: Option<Duration>,
}

/// The subcommands; without one, `engine` runs the main job.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Parse and validate a config file, reporting every problem.
    Validate {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print events from segments, merged across streams in time order.
    Replay(ReplayCmd),
    /// Streams, segments, events, bytes, compression, time span, losses, sampling.
    Inspect {
        /// A data directory written by the engine (its stream-NNN/ folders).
        dir: PathBuf,
    },
    /// Check every block; exit 1 with a report naming each bad file and offset.
    Verify {
        /// A data directory written by the engine (its stream-NNN/ folders).
        dir: PathBuf,
    },
    /// The summary stream recomputed from segments: the JSON lines the live engine
    /// wrote (semantic.jsonl_path) for those records, byte for byte.
    Summarize {
        /// A data directory written by the engine (its stream-NNN/ folders).
        dir: PathBuf,
        /// Regroup by windows of this length (ms) instead of the recorded ones.
        #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
        window_ms: Option<u64>,
        /// Windows starting at or after this time (RFC 3339 or ns since the epoch).
        #[arg(long)]
        from: Option<String>,
        /// Windows starting before this time.
        #[arg(long)]
        to: Option<String>,
        /// Publish the lines to NATS JetStream at this URL (backfill; the `[export.nats]`
        /// settings of the config apply) instead of printing them.
        #[arg(long, value_name = "URL")]
        publish: Option<String>,
    },
    /// The fleet's windows: many hosts' summaries read back from NATS JetStream (a
    /// durable consumer) and merged per window (docs/fleet.md).
    Fleet {
        /// The NATS server (the `[export.nats]` settings of the config apply).
        #[arg(long, value_name = "URL")]
        nats: String,
        /// Windows starting at or after this time (RFC 3339 or ns since the epoch).
        #[arg(long)]
        from: Option<String>,
        /// Windows starting before this time.
        #[arg(long)]
        to: Option<String>,
        /// Read for this many seconds, then print.
        #[arg(long, value_name = "S", conflicts_with = "once")]
        duration: Option<u64>,
        /// Read what the stream holds now, print, exit.
        #[arg(long)]
        once: bool,
        /// The durable consumer's name: it remembers what it has read.
        #[arg(long, default_value = "kevent-fleet")]
        durable: String,
        /// Entries in each top list.
        #[arg(long, default_value_t = 10)]
        top_n: usize,
        /// Fleet windows of this many seconds (the hosts' windows grouped by where they
        /// start) instead of the hosts' own windows.
        #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=86_400))]
        window: Option<u64>,
        /// A table for people instead of JSON lines.
        #[arg(long)]
        text: bool,
    },
    /// Shell completions for `engine` to stdout (bash: `engine completions bash >
    /// /etc/bash_completion.d/engine`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The man page (roff) to stdout: `engine manpage > engine.1; man ./engine.1`.
    Manpage,
    /// A live view of a running engine (its gRPC API): events/s by kind, top processes
    /// and containers, drops by reason, sampling and ring fill per core, notable events.
    /// `q` quits.
    Top {
        /// The engine's gRPC address, HOST:PORT or a URL (default: export.grpc.listen of
        /// --config, or of the embedded default config).
        #[arg(long, value_name = "ADDR")]
        endpoint: Option<String>,
    },
    /// What this host offers the capture, without starting it: kernel, BTF, lockdown,
    /// capabilities, tracefs, cgroup2, io_uring, memory, and for every kind the config
    /// asks for the hook that will supply it or why none can (each program is loaded for
    /// real, then unloaded). Exit 0: the config runs fully; 1: degraded; 2: it cannot run.
    Doctor {
        /// Config file (TOML); without it, the embedded default.
        #[arg(long = "config", value_name = "FILE", id = "doctor_config")]
        config: Option<PathBuf>,
        /// Override a config key, as for the main job (repeatable).
        #[arg(short = 'o', long = "set", value_name = "KEY=VALUE", id = "doctor_set")]
        set: Vec<Override>,
        /// Human-readable, or one JSON object.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::doctor::DoctorFormat,
    },
    /// Live tail of kernel events to stdout (no storage), for a quick look.
    Tail {
        /// Categories, comma separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "process,file,net,security,container,memory"
        )]
        categories: Vec<String>,
        #[command(flatten)]
        live: LiveArgs,
    },
}

/// `engine replay DIR [filters]`.
#[derive(Debug, Args)]
pub struct ReplayCmd {
    /// A data directory written by the engine (its stream-NNN/ folders).
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Kinds to show (process.exec, ..., loss), comma separated.
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<String>,
    /// Only events of this process (thread group id).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Command name, exact or a prefix ending in `*`.
    #[arg(long)]
    pub comm: Option<String>,
    /// Start time: RFC 3339 (2026-11-26T02:10:00Z, offsets and fractions allowed) or ns
    /// since the Unix epoch.
    #[arg(long)]
    pub from: Option<String>,
    /// End time (exclusive), as --from; must be after --from.
    #[arg(long)]
    pub to: Option<String>,
    /// Stop after this many events (0: none).
    #[arg(long)]
    pub limit: Option<u64>,
    /// Stop with exit 1 at the first undecodable record (default: report it on stderr,
    /// skip it, count it, exit 0 with a warning).
    #[arg(long)]
    pub strict: bool,
}

/// A positive, finite number of seconds that fits a `Duration`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s} is not a number of seconds"))?;
    if !secs.is_finite() {
        return Err(format!("{s} is not a finite number of seconds"));
    }
    if secs <= 0.0 {
        return Err(format!("{s} is not a positive number of seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| {
        format!(
            "{s} seconds does not fit a duration (at most {} s)",
            Duration::MAX.as_secs()
        )
    })
}

/// Parses the command line and runs it: what the `engine` binary does.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("engine: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The main job's options given before a subcommand on which they have no effect.
fn ignored_options(cli: &Cli) -> Option<(&'static str, Vec<&'static str>)> {
    let name = match cli.cmd.as_ref()? {
        Cmd::Validate { .. } => "validate",
        Cmd::Replay(_) => "replay",
        Cmd::Inspect { .. } => "inspect",
        Cmd::Verify { .. } => "verify",
        Cmd::Summarize { .. } => "summarize",
        Cmd::Tail { .. } => "tail",
        Cmd::Fleet { .. } => "fleet",
        Cmd::Completions { .. } => "completions",
        Cmd::Manpage => "manpage",
        Cmd::Top { .. } => "top",
        Cmd::Doctor { .. } => "doctor",
    };
    let tail = name == "tail";
    let validate = name == "validate";
    // The doctor judges the config the main job would run: --config and -o apply.
    let doctor = name == "doctor";
    // These read `[export.nats]` (stream, prefix, credentials, TLS) or, for top,
    // `[export.grpc]` from the config.
    let nats = matches!(
        cli.cmd,
        Some(Cmd::Fleet { .. })
            | Some(Cmd::Top { .. })
            | Some(Cmd::Summarize {
                publish: Some(_),
                ..
            })
    );
    let given: Vec<&'static str> = [
        ("--config", cli.config.is_some() && !nats && !doctor),
        (
            "-o/--set",
            !cli.set.is_empty() && !validate && !nats && !doctor,
        ),
        ("--data-dir", cli.data_dir.is_some()),
        ("--duration", cli.live.duration.is_some() && !tail),
        ("--quiet", cli.quiet),
    ]
    .into_iter()
    .filter_map(|(flag, given)| given.then_some(flag))
    .collect();
    (!given.is_empty()).then_some((name, given))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Some((cmd, flags)) = ignored_options(&cli) {
        return Err(Error::Invalid(format!(
            "{} has no effect on `engine {cmd}`: only the main job (`engine` without a \
             subcommand) uses it",
            flags.join(", ")
        )));
    }
    match cli.cmd {
        Some(Cmd::Validate { file }) => {
            crate::run::validate(&file, &cli.set)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Replay(r)) => replay(r),
        Some(Cmd::Inspect { dir }) => {
            match crate::offline::inspect::inspect(&dir, &mut io::stdout().lock()) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                // `engine inspect DIR | head`: what was asked for was written.
                Err(e) if e.is_broken_pipe() => Ok(ExitCode::SUCCESS),
                Err(e) => Err(e),
            }
        }
        Some(Cmd::Verify { dir }) => verify(&dir),
        Some(Cmd::Summarize {
            dir,
            window_ms,
            from,
            to,
            publish,
        }) => {
            let args = crate::offline::summarize::SummarizeArgs {
                window_ms,
                range: TimeRange::parse(from.as_deref(), to.as_deref())?,
            };
            if let Some(url) = publish {
                let mut config = crate::Config::load_with(cli.config.as_deref(), &cli.set)?;
                config.export.nats.url = url;
                return crate::offline::summarize::publish(&dir, &args, &config);
            }
            // Summarize reports its progress over the core streams.
            let bar = crate::offline::progress::Bar::of_streams("summarize", &dir, |id| {
                id < crate::enrich::enricher::ENRICH_STREAM_ID
            });
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(
                1 << 16,
                crate::offline::progress::Suspend::new(stdout.lock(), bar.handle()),
            );
            match crate::offline::summarize::summarize(&dir, &args, &mut out, &bar) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) if e.is_broken_pipe() => Ok(ExitCode::SUCCESS),
                Err(e) => Err(e),
            }
        }
        Some(Cmd::Fleet {
            nats,
            from,
            to,
            duration,
            once,
            durable,
            top_n,
            window,
            text,
        }) => {
            if duration.is_none() && !once {
                return Err(Error::Invalid(
                    "fleet: give --once (what the stream holds) or --duration S".into(),
                ));
            }
            let config = crate::Config::load_with(cli.config.as_deref(), &cli.set)?;
            let args = crate::offline::fleet::FleetArgs {
                url: nats,
                range: TimeRange::parse(from.as_deref(), to.as_deref())?,
                duration: duration.map(std::time::Duration::from_secs),
                durable,
                text,
                top_n,
                window_ms: window.map(|s| s * 1000),
            };
            crate::offline::fleet::fleet(&args, &config)
        }
        Some(Cmd::Completions { shell }) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "engine", &mut io::stdout().lock());
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Top { endpoint }) => {
            let config = crate::Config::load_with(cli.config.as_deref(), &cli.set)?;
            crate::top::top(crate::top::TopArgs::from(endpoint, &config)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Manpage) => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match clap_mangen::Man::new(cmd).render(&mut io::stdout().lock()) {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
                Err(e) => Err(Error::io("writing the man page")(e)),
            }
        }
        Some(Cmd::Doctor {
            config,
            mut set,
            format,
        }) => {
            if config.is_some() && cli.config.is_some() {
                return Err(Error::Invalid(
                    "doctor: --config is given twice (before and after `doctor`)".into(),
                ));
            }
            let mut all = cli.set;
            all.append(&mut set);
            crate::doctor::doctor(config.as_deref().or(cli.config.as_deref()), &all, format)
        }
        Some(Cmd::Tail { categories, live }) => {
            tail(&categories, live.duration.or(cli.live.duration))
        }
        None => collect(
            cli.config.as_deref(),
            &cli.set,
            cli.data_dir,
            cli.live.duration,
            cli.quiet,
        ),
    }
}

fn replay(r: ReplayCmd) -> Result<ExitCode> {
    let args = ReplayArgs {
        kinds: r.kind,
        pid: r.pid,
        comm: r.comm,
        range: TimeRange::parse(r.from.as_deref(), r.to.as_deref())?,
        limit: r.limit,
        strict: r.strict,
    };
    let bar = crate::offline::progress::Bar::new("replay", &r.dir);
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(
        1 << 16,
        crate::offline::progress::Suspend::new(stdout.lock(), bar.handle()),
    );
    let result =
        crate::offline::replay::replay(&r.dir, &args, r.format, &mut out, &mut io::stderr(), &bar);
    match result {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) if e.is_broken_pipe() => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    }
}

fn verify(dir: &Path) -> Result<ExitCode> {
    let sound = crate::offline::verify::verify(dir, &mut io::stdout().lock())?;
    Ok(if sound {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn tail(categories: &[String], duration: Option<Duration>) -> Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    crate::tail::tail(categories, duration, &mut out, &mut io::stderr())?;
    Ok(ExitCode::SUCCESS)
}

fn collect(
    config: Option<&Path>,
    overrides: &[Override],
    data_dir: Option<PathBuf>,
    duration: Option<Duration>,
    quiet: bool,
) -> Result<ExitCode> {
    crate::run::main_job(config, overrides, data_dir, duration, quiet)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_that_do_not_fit_are_refused() {
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in [
            "1e20", "inf", "-inf", "NaN", "-1", "0", "-0", "", "ten", "1e400",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.starts_with(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn duration_is_an_option_of_tail_too() {
        let d = |args: &[&str]| match Cli::try_parse_from(args).map(|c| (c.live, c.cmd)) {
            Ok((_, Some(Cmd::Tail { live, .. }))) => live.duration,
            Ok((live, _)) => live.duration,
            Err(e) => panic!("{args:?}: {e}"),
        };
        assert_eq!(
            d(&["engine", "tail", "--duration", "10"]),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            d(&["engine", "--duration", "2"]),
            Some(Duration::from_secs(2))
        );
        assert!(Cli::try_parse_from(["engine", "replay", "d", "--duration", "1"]).is_err());
        assert!(Cli::try_parse_from(["engine", "verify", "d", "--quiet"]).is_err());
    }
}
