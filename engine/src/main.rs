//! `engine`: the main job (`engine --config FILE`) and the offline tools.

use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use engine::config::Config;
use engine::replay::{Format, ReplayArgs, parse_time};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kernel event collector: captures kernel events through eBPF into indexed,
/// compressed segment files, and replays them.
#[derive(Debug, Parser)]
#[command(name = "engine", version)]
struct Cli {
    /// Config file (TOML); without it, the embedded default (configs/default.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where segments go (overrides storage.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// No status lines on stderr.
    #[arg(long)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Parse and validate a config file, reporting every problem.
    Validate { file: PathBuf },
    /// Print events from segments, merged across streams in time order.
    Replay {
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: FormatArg,
        /// Kinds to show (process.exec, ..., loss), comma separated.
        #[arg(long, value_delimiter = ',')]
        kind: Vec<String>,
        #[arg(long)]
        pid: Option<u32>,
        /// Command name, exact or a prefix ending in `*`.
        #[arg(long)]
        comm: Option<String>,
        /// Start time: RFC 3339 (2026-11-26T02:10:00Z) or ns since the Unix epoch.
        #[arg(long)]
        from: Option<String>,
        /// End time (exclusive), as --from.
        #[arg(long)]
        to: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Streams, segments, events, bytes, compression, time span, losses, sampling.
    Inspect { dir: PathBuf },
    /// Check every block; exit 1 with a report naming each bad file and offset.
    Verify { dir: PathBuf },
    /// Live tail of kernel events to stdout (no storage), for a quick look.
    Tail {
        /// Categories, comma separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "process,file,net,security,container,memory"
        )]
        categories: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("engine: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn seconds(d: Option<f64>) -> anyhow::Result<Option<Duration>> {
    match d {
        Some(d) if !(d.is_finite() && d > 0.0) => {
            bail!("--duration: {d} is not a positive number of seconds")
        }
        d => Ok(d.map(Duration::from_secs_f64)),
    }
}

fn time(arg: &str, s: &Option<String>) -> anyhow::Result<Option<i128>> {
    s.as_deref()
        .map(|t| {
            parse_time(t).with_context(|| {
                format!("{arg}: {t:?} is not RFC 3339 (2026-11-26T02:10:00Z) or ns since the epoch")
            })
        })
        .transpose()
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Some(Cmd::Validate { file }) => {
            engine::run::validate(&file)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Replay {
            dir,
            format,
            kind,
            pid,
            comm,
            from,
            to,
            limit,
        }) => {
            let args = ReplayArgs {
                kinds: kind,
                pid,
                comm,
                from_unix_ns: time("--from", &from)?,
                to_unix_ns: time("--to", &to)?,
                limit,
            };
            let format = match format {
                FormatArg::Text => Format::Text,
                FormatArg::Json => Format::Json,
            };
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
            match engine::replay::replay(&dir, &args, format, &mut out) {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(e)
                    if e.downcast_ref::<io::Error>()
                        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
                {
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(e),
            }
        }
        Some(Cmd::Inspect { dir }) => {
            engine::replay::inspect(&dir, &mut io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Verify { dir }) => {
            let problems = engine::replay::verify(&dir)?;
            if problems.is_empty() {
                println!("{}: every block is sound", dir.display());
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &problems {
                    println!("{p}");
                }
                println!("{} problem(s)", problems.len());
                Ok(ExitCode::from(1))
            }
        }
        Some(Cmd::Tail { categories }) => {
            let mut set = std::collections::BTreeSet::new();
            for name in &categories {
                let Some(c) = bpf::Category::from_name(name.trim()) else {
                    bail!("--categories: unknown category {name:?}");
                };
                set.insert(c);
            }
            let config = bpf::CaptureConfig {
                categories: set,
                ..bpf::CaptureConfig::default()
            };
            engine::run::install_stop_handlers();
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
            let (collector, stats) = engine::tail::run(&config, seconds(cli.duration)?, &mut out)?;
            engine::tail::write_summary(&mut io::stderr(), &collector, &stats)?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let duration = seconds(cli.duration)?;
            let (mut config, origin) = match &cli.config {
                Some(path) => (Config::load(path)?, path.display().to_string()),
                None => (Config::embedded_default(), "embedded default".to_string()),
            };
            if let Some(dir) = cli.data_dir {
                config.storage.data_dir = dir;
            }
            config
                .check(std::path::Path::new(&origin))
                .context("after command-line overrides")?;
            engine::run::install_stop_handlers();
            let summary = engine::run::run(&config, duration, !cli.quiet)?;
            summary.write_report(&mut io::stderr())?;
            let (hooks, accounted) = summary.identity();
            if hooks != accounted {
                bail!("accounting identity does not hold: {hooks} produced, {accounted} accounted");
            }
            if summary.cores.iter().any(|c| c.storage_error.is_some()) {
                bail!("storage failed; see above");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
