//! The `engine` binary from the outside: bad input gets one clear message and a
//! non-zero exit, never a panic.

use std::os::unix::process::CommandExt;
use std::process::Command;

mod common;

use common::{ENGINE, privileged};

fn fails_with(args: &[&str], message: &str) -> String {
    let out = Command::new(ENGINE)
        .args(args)
        .output()
        .expect("running engine");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "engine {args:?} succeeded");
    assert!(
        err.contains(message),
        "engine {args:?}: expected {message:?} in:\n{err}"
    );
    assert!(
        !err.contains("panicked"),
        "engine {args:?} panicked:\n{err}"
    );
    err
}

fn temp(name: &str, content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("engine-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn bad_arguments_are_named() {
    for (d, why) in [
        ("-1", "-1 is not a positive number of seconds"),
        ("1e20", "1e20 seconds does not fit a duration"),
        ("inf", "inf is not a finite number"),
        ("NaN", "NaN is not a finite number"),
        ("1e400", "1e400 is not a finite number"),
        ("ten", "ten is not a number of seconds"),
    ] {
        let err = fails_with(&[&format!("--duration={d}")], why);
        assert!(err.contains("invalid value"), "{err}");
    }
    fails_with(&["--no-such-flag"], "unexpected argument '--no-such-flag'");
    fails_with(
        &["replay", "/nonexistent/dir"],
        "/nonexistent/dir: no such directory",
    );
    fails_with(&["inspect", "/nonexistent/dir"], "no such directory");
    let dir = std::env::temp_dir();
    fails_with(
        &["replay", dir.to_str().unwrap(), "--from", "yesterday"],
        "--from: \"yesterday\" is not RFC 3339",
    );
    for bad in [
        "2026-11-26T12:00:00+0é00",
        "2026-02-31T00:00:00Z",
        "2026-+1-26T00:00:00Z",
    ] {
        fails_with(
            &["replay", dir.to_str().unwrap(), "--from", bad],
            &format!("--from: {bad:?} is not RFC 3339"),
        );
    }
    fails_with(
        &[
            "replay",
            dir.to_str().unwrap(),
            "--from",
            "2026-11-26T12:00:00+01:00",
            "--to",
            "2026-11-26T11:00:00Z",
        ],
        "--from 2026-11-26T12:00:00+01:00 is not before --to 2026-11-26T11:00:00Z",
    );
    fails_with(
        &["--duration", "5", "replay", dir.to_str().unwrap()],
        "--duration has no effect on `engine replay`",
    );
    fails_with(
        &["replay", dir.to_str().unwrap(), "--kind", "process.exce"],
        "unknown kind",
    );
    fails_with(
        &["tail", "--categories", "process,bogus"],
        "unknown category \"bogus\"",
    );
}

#[test]
fn bad_configs_are_named_with_every_problem() {
    let missing = "/nonexistent/engine.toml";
    fails_with(&["--config", missing], missing);
    fails_with(&["validate", missing], "No such file");

    let unknown = temp("unknown.toml", "[capture]\nring_byts = 4096\n");
    let err = fails_with(&["--config", unknown.to_str().unwrap()], "ring_byts");
    assert!(err.contains("unknown.toml"), "{err}");

    let invalid = temp(
        "invalid.toml",
        "[capture]\nring_bytes = 1000\ncategories = [\"bogus\"]\n[engine]\ncpus = [0, 0]\n",
    );
    for cmd in [vec!["--config"], vec!["validate"]] {
        let mut args = cmd.clone();
        args.push(invalid.to_str().unwrap());
        let err = fails_with(&args, "4 problem(s)");
        for key in [
            "capture.ring_bytes",
            "capture.wakeup_bytes",
            "capture.categories",
            "engine.cpus",
        ] {
            assert!(err.contains(key), "{err}");
        }
    }
    // Enumerations are checked by the parser, naming the key and the choices.
    let bad_enum = temp("enum.toml", "[storage]\ndurability = \"sometimes\"\n");
    let err = fails_with(&["validate", bad_enum.to_str().unwrap()], "sometimes");
    assert!(
        err.contains("durability") && err.contains("on_seal"),
        "{err}"
    );

    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/security.toml");
    let out = Command::new(ENGINE)
        .args(["validate", good])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn overrides_set_any_key_and_name_the_one_that_is_wrong() {
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/default.toml");
    let out = Command::new(ENGINE)
        .args(["-o", "semantic.min_importance=0.6", "--set"])
        .arg(r#"capture.categories=["process","file"]"#)
        .args(["validate", cfg])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("with 2 override(s): valid"));
    // A value the validation refuses: named with its key and the override.
    let e = fails_with(
        &["-o", "storage.zstd_level=42", "validate", cfg],
        "storage.zstd_level: 42 is not between",
    );
    assert!(e.contains("with -o storage.zstd_level=42"), "{e}");
    // Unknown keys, wrong types, bad syntax; the main job refuses before loading BPF.
    fails_with(
        &["-o", "storage.bogus=1", "validate", cfg],
        "-o storage.bogus=1: unknown field `bogus`",
    );
    fails_with(
        &["-o", "storage.zstd_level=fast", "validate", cfg],
        "-o storage.zstd_level=fast: invalid type",
    );
    fails_with(&["-o", "nokey", "validate", cfg], "is not KEY=VALUE");
    fails_with(
        &["-o", "enrich.processes_max=1", "--duration", "1"],
        "enrich.processes_max: 1 is not between",
    );
    // Subcommands that read no config refuse it rather than ignore it.
    fails_with(
        &["-o", "storage.zstd_level=1", "inspect", "/tmp"],
        "-o/--set has no effect on `engine inspect`",
    );
}

#[test]
fn a_missing_data_directory_is_named() {
    let cfg = temp(
        "nodir.toml",
        "[storage]\ndata_dir = \"/nonexistent/kevent-data\"\ncreate_data_dir = false\n",
    );
    fails_with(
        &["--config", cfg.to_str().unwrap(), "--duration", "1"],
        "storage.data_dir /nonexistent/kevent-data: no such directory",
    );
    let file = temp("plainfile", "x");
    fails_with(
        &["--data-dir", file.to_str().unwrap(), "--duration", "1"],
        "exists but is not a directory",
    );
}

#[test]
fn unprivileged_run_says_what_is_missing() {
    if !privileged("unprivileged_run_says_what_is_missing") {
        return;
    }
    // A copy nobody can run wherever the checkout lives (CI may clone under a directory
    // only root can enter), and a data directory nobody may use.
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("engine-cli-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let exe = dir.join("engine");
    std::fs::copy(ENGINE, &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&exe)
        .args(["--duration", "1", "--data-dir"])
        .arg(&dir)
        .current_dir("/")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("running engine as nobody");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // Named before anything is touched, each with what it is for.
    assert!(
        err.contains("missing capabilities: CAP_BPF (loading the BPF programs")
            && err.contains("CAP_PERFMON (attaching"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// The words of a `file.open` record of `pid`/`cat` opening /etc/hosts at `ts_ns`.
fn file_open(ts_ns: u64) -> Vec<u64> {
    use bpf::Kind;
    use bpf::abi::{EventHeader, FileOp};
    let len = Kind::FileOpen.record_len();
    let mut words = vec![0u64; len / 8];
    let b: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    let (head, body) = b.split_at_mut(64);
    let h: &mut EventHeader = bytemuck::from_bytes_mut(head);
    h.ts_ns = ts_ns;
    h.kind = Kind::FileOpen as u16;
    h.len = len as u32;
    h.pid = 77;
    h.comm[..3].copy_from_slice(b"cat");
    let p: &mut FileOp = bytemuck::from_bytes_mut(body);
    p.path[..10].copy_from_slice(b"/etc/hosts");
    p.path_len = 10;
    words
}

/// A `file.open` record cut short: it does not decode.
fn undecodable(ts_ns: u64) -> Vec<u64> {
    let mut words = file_open(ts_ns);
    words.truncate(10);
    words
}

/// The only segment of stream 0.
fn first_segment(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("stream-000"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// A fresh data directory for a test.
fn data_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("engine-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A writer of stream `stream` in `dir` whose segment says `mono_to_wall_ns`.
fn writer(dir: &std::path::Path, stream: u32, mono_to_wall_ns: i64) -> storage::StreamWriter {
    let mut cfg = storage::WriterConfig::new(dir, stream);
    cfg.io = storage::IoBackend::Portable;
    cfg.mono_to_wall_ns = mono_to_wall_ns;
    cfg.abi_version = bpf::abi::ABI_VERSION;
    storage::StreamWriter::create(cfg).unwrap()
}

fn append(w: &mut storage::StreamWriter, ts_ns: u64, kind: u16, words: &[u64]) {
    w.append(&storage::RecordRef {
        ts_ns,
        kind,
        weight: 1,
        bytes: bytemuck::cast_slice(words),
    })
    .unwrap();
}

/// A data directory with a few real records, written without the kernel.
fn offline_dir(tag: &str) -> std::path::PathBuf {
    let dir = data_dir(tag);
    let mut w = writer(&dir, 0, storage::mono_to_wall_ns());
    for i in 0..3u64 {
        append(
            &mut w,
            1_000 + i,
            bpf::Kind::FileOpen as u16,
            &file_open(1_000 + i),
        );
    }
    w.append_loss(&storage::Loss {
        stream: 0,
        cpu: 1,
        kind: bpf::Kind::FileOpen as u16,
        reason: storage::LossReason::KernelRingFull as u16,
        count: 5,
        start_ns: 900,
        end_ns: 1_002,
    })
    .unwrap();
    w.close().unwrap();
    dir
}

fn engine(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(ENGINE).args(args).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!stderr.contains("panicked"), "engine {args:?}:\n{stderr}");
    (out.status.code(), stdout, stderr)
}

#[test]
fn replay_limit_zero_prints_nothing() {
    let dir = offline_dir("limit0");
    let d = dir.to_str().unwrap();
    for format in ["text", "json"] {
        let (code, out, err) = engine(&["replay", d, "--limit", "0", "--format", format]);
        assert_eq!((code, out.as_str()), (Some(0), ""), "{err}");
    }
    let (_, out, _) = engine(&["replay", d, "--limit", "1"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_prints_records_at_extreme_times() {
    // ts = u64::MAX, and segments whose clocks map to the earliest and latest wall-clock
    // times a u64 + i64 can give: every record is printed, in text and JSON.
    let dir = data_dir("extreme");
    let kind = bpf::Kind::FileOpen as u16;
    let mut w = writer(&dir, 0, i64::MIN);
    for ts in [0, 1_000, u64::MAX] {
        append(&mut w, ts, kind, &file_open(ts));
    }
    w.close().unwrap();
    let mut w = writer(&dir, 1, i64::MAX);
    append(&mut w, u64::MAX, kind, &file_open(u64::MAX));
    w.close().unwrap();
    let d = dir.to_str().unwrap();

    let (code, out, err) = engine(&["replay", d]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    for (line, ts) in lines.iter().zip([
        "1677-09-21T00:12:43.145224192Z",
        "1677-09-21T00:12:43.145225192Z",
        "2262-04-11T23:47:16.854775807Z",
        "2846-10-30T23:21:50.564327422Z",
    ]) {
        assert!(line.starts_with(ts), "{line}");
        assert!(line.contains("file.open path=/etc/hosts"), "{line}");
    }
    let (code, out, err) = engine(&["replay", d, "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["kind"], "file.open", "{line}");
        assert!(v.get("ts_out_of_range").is_none(), "{line}");
    }
    let (code, out, _) = engine(&["inspect", d]);
    assert_eq!(code, Some(0));
    assert!(out.contains("events 4"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn undecodable_records_are_named_skipped_and_counted() {
    let dir = data_dir("undecodable");
    let kind = bpf::Kind::FileOpen as u16;
    let mut w = writer(&dir, 3, 0);
    append(&mut w, 1, kind, &file_open(1));
    w.flush().unwrap(); // the bad records are in the second block, not at offset 256
    append(&mut w, 2, kind, &undecodable(2));
    append(&mut w, 3, storage::KIND_LOSS, &[0u64; 2]); // not a 40-byte loss record
    append(&mut w, 4, kind, &file_open(4));
    w.close().unwrap();
    let d = dir.to_str().unwrap();
    let seg_path = std::fs::read_dir(dir.join("stream-003"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let seg = storage::Segment::open(&seg_path).unwrap();
    let offset = seg.blocks()[1].offset;
    assert!(offset > seg.blocks()[0].offset);
    let s = seg_path.display();

    let (code, out, err) = engine(&["replay", d]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        err.contains(&format!(
            "replay: {s}: block at offset {offset}, record 0 (kind file.open, at \
             1970-01-01T00:00:00.000000002Z, ts_ns 2): does not decode: file.open record: \
             header says"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "replay: {s}: block at offset {offset}, record 1 (kind loss, at \
             1970-01-01T00:00:00.000000003Z, ts_ns 3): does not decode: a loss record of 16 \
             bytes; skipped"
        )),
        "{err}"
    );
    assert!(
        err.contains("warning: 2 undecodable record(s) skipped; `engine verify"),
        "{err}"
    );

    let (code, out, err) = engine(&["replay", d, "--strict", "--format", "json"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        err.contains(&format!("{s}: block at offset {offset}, record 0 "))
            && err.contains("ts_ns 2): does not decode")
            && err.contains("--strict"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inspect_replay_and_verify_offline() {
    let dir = offline_dir("offline");
    let d = dir.to_str().unwrap();
    let out = Command::new(ENGINE).args(["inspect", d]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("events 3"), "{text}");
    assert!(
        text.contains("losses: 1 records: kernel_ring_full 5"),
        "{text}"
    );
    assert!(text.contains("kinds: file.open 3"), "{text}");

    let out = Command::new(ENGINE).args(["replay", d]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(
        text.lines()
            .all(|l| l.contains("file.open path=/etc/hosts") || l.contains("LOSS")),
        "{text}"
    );
    let out = Command::new(ENGINE)
        .args(["replay", d, "--kind", "loss", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            v["kind"].as_str(),
            v["count"].as_u64(),
            v["reason"].as_str()
        ),
        (Some("loss"), Some(5), Some("kernel_ring_full"))
    );
    let out = Command::new(ENGINE)
        .args(["replay", d, "--limit", "2", "--comm", "ca*"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    let out = Command::new(ENGINE).args(["verify", d]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // One flipped byte in the block: verify names the file and the offset, exit 1.
    let seg = first_segment(&dir);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[300] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let out = Command::new(ENGINE).args(["verify", d]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&seg.display().to_string()) && text.contains("at offset"),
        "{text}"
    );
    assert!(text.contains("1 problem(s)"), "{text}");
    let err = fails_with(&["replay", d], "at offset");
    assert!(err.contains(&seg.display().to_string()), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_and_inspect_report_bad_records_skipped_entries_and_other_abis() {
    let dir = data_dir("verify-report");
    let kind = bpf::Kind::FileOpen as u16;
    let mut w = writer(&dir, 0, 0);
    append(&mut w, 1, kind, &file_open(1));
    for ts in 2..32 {
        append(&mut w, ts, kind, &undecodable(ts));
    }
    w.close().unwrap();
    let seg = first_segment(&dir);
    std::fs::write(dir.join("stream-000/notes.txt"), "not a segment").unwrap();
    let d = dir.to_str().unwrap();

    // 30 undecodable records in one file: 20 listed, then a count; exit 1.
    let (code, out, err) = engine(&["verify", d]);
    assert_eq!(code, Some(1), "{out}{err}");
    let seg_s = seg.display().to_string();
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with(&seg_s) && l.contains("does not decode"))
            .count(),
        20,
        "{out}"
    );
    assert!(
        out.contains(&format!("10 more problem(s) in {seg_s}")),
        "{out}"
    );
    assert!(
        out.contains("notes.txt: skipped: not a segment or stream name"),
        "{out}"
    );
    assert!(
        out.contains("checked 1 segment file(s), 1 block(s), 31 record(s)"),
        "{out}"
    );
    assert!(out.ends_with("30 problem(s)\n"), "{out}");

    let (code, out, _) = engine(&["inspect", d]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("notes.txt: skipped: not a segment or stream name"),
        "{out}"
    );
    let (code, _, err) = engine(&["replay", d]);
    assert_eq!(code, Some(0));
    assert!(
        err.starts_with("replay: ") && err.contains("notes.txt: skipped: not a segment"),
        "{err}"
    );
    // Replay too lists 20 of them by file and block, then counts the rest.
    assert_eq!(
        err.lines()
            .filter(
                |l| l.starts_with(&format!("replay: {seg_s}: block at offset "))
                    && l.contains("does not decode")
            )
            .count(),
        20,
        "{err}"
    );
    assert!(
        err.contains("30 undecodable record(s) skipped (10 not listed above)"),
        "{err}"
    );

    // A segment of another event ABI is refused by name, not misread.
    let other = data_dir("other-abi");
    let mut cfg = storage::WriterConfig::new(&other, 0);
    cfg.io = storage::IoBackend::Portable;
    cfg.abi_version = bpf::abi::ABI_VERSION + 1;
    let mut w = storage::StreamWriter::create(cfg).unwrap();
    append(&mut w, 1, kind, &file_open(1));
    w.close().unwrap();
    let o = other.to_str().unwrap();
    let (code, out, _) = engine(&["verify", o]);
    assert_eq!(code, Some(1), "{out}");
    let abi = format!(
        "records are event ABI version {}, this reader expects {}",
        bpf::abi::ABI_VERSION + 1,
        bpf::abi::ABI_VERSION
    );
    assert!(out.contains(&abi) && out.contains(".seg"), "{out}");
    let err = fails_with(&["inspect", o], &abi);
    assert!(err.contains(o), "{err}");
    // Replay too, before printing anything: the file and what to do.
    let other_seg = first_segment(&other);
    let err = fails_with(&["replay", o], &abi);
    assert!(
        err.contains(&other_seg.display().to_string())
            && err.contains(&format!(
                "replay it with an engine built for ABI {}",
                bpf::abi::ABI_VERSION + 1
            )),
        "{err}"
    );
    let (_, out, _) = engine(&["replay", o]);
    assert_eq!(out, "", "nothing of another ABI is printed");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}

/// Every subcommand's name, from `engine --help`.
fn subcommands() -> Vec<String> {
    let help = Command::new(ENGINE).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout).into_owned();
    let list = text.split("Commands:").nth(1).expect("a Commands: section");
    list.lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_and_the_man_page_know_every_subcommand() {
    let subs = subcommands();
    assert!(
        subs.len() >= 8 && subs.iter().any(|s| s == "completions"),
        "{subs:?}"
    );
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(ENGINE)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        for s in &subs {
            assert!(text.contains(s.as_str()), "{shell} completions lack {s}");
        }
    }
    // bash completes a prefix to the subcommand, and a subcommand's flags (called as
    // bash calls it: command, word, previous word).
    let script = format!(
        "source <({ENGINE} completions bash); \
         COMP_WORDS=(engine summ); COMP_CWORD=1; _engine engine summ engine; \
         echo \"${{COMPREPLY[@]}}\"; \
         COMP_WORDS=(engine replay DIR --for); COMP_CWORD=3; _engine engine --for DIR; \
         echo \"${{COMPREPLY[@]}}\""
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first().copied(), Some("summarize"), "{text}");
    assert_eq!(lines.get(1).copied(), Some("--format"), "{text}");
    assert!(
        Command::new(ENGINE)
            .args(["completions", "tcsh"])
            .output()
            .is_ok_and(|o| !o.status.success())
    );

    let out = Command::new(ENGINE).arg("manpage").output().unwrap();
    assert!(out.status.success());
    let roff = String::from_utf8_lossy(&out.stdout);
    assert!(roff.contains(".TH engine 1"), "{roff}");
    for s in &subs {
        assert!(
            roff.contains(&format!("engine\\-{s}")) || roff.contains(s.as_str()),
            "man page lacks {s}"
        );
    }
    // Rendered by man when it is installed: the sections a man page has.
    let page = std::env::temp_dir().join(format!("engine-{}.1", std::process::id()));
    std::fs::write(&page, &out.stdout).unwrap();
    if let Ok(man) = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "80")
        .output()
        && man.status.success()
    {
        let text = String::from_utf8_lossy(&man.stdout);
        for section in ["NAME", "SYNOPSIS", "OPTIONS", "SUBCOMMANDS"] {
            assert!(text.contains(section), "{section}: {text}");
        }
    }
    let _ = std::fs::remove_file(&page);
}

#[test]
fn a_long_replay_shows_a_progress_bar_on_a_terminal_and_none_in_a_pipe() {
    // 300,000 records in small blocks: a replay to a terminal takes seconds.
    let dir = data_dir("progress");
    let mut cfg = storage::WriterConfig::new(&dir, 0);
    cfg.io = storage::IoBackend::Portable;
    cfg.abi_version = bpf::abi::ABI_VERSION;
    cfg.block_bytes = 16 << 10;
    let mut w = storage::StreamWriter::create(cfg).unwrap();
    for i in 0..300_000u64 {
        let ts = 1_000_000_000 + i * 1000;
        append(&mut w, ts, bpf::Kind::FileOpen as u16, &file_open(ts));
    }
    w.close().unwrap();

    // In a pipe: nothing but the lines (no bar, no carriage returns on stderr).
    let out = Command::new(ENGINE)
        .args(["replay", dir.to_str().unwrap(), "--limit", "1000"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var("REQUIRE_BPF").map_or(true, |v| v != "1"),
            "tmux is not installed (REQUIRE_BPF=1)"
        );
        return;
    }
    // On a terminal: the bar, with blocks, percentage and ETA, under the lines.
    let session = format!("kevbar-{}", std::process::id());
    let started = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session, "-x", "160", "-y", "20"])
        .arg(format!("{ENGINE} replay {}; sleep 60", dir.display()))
        .status()
        .unwrap();
    assert!(started.success());
    let mut screen = String::new();
    let seen = common::poll_until(std::time::Duration::from_secs(30), || {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .unwrap();
        screen = String::from_utf8_lossy(&out.stdout).into_owned();
        screen
            .lines()
            .any(|l| l.starts_with("replay: [") && l.contains(" blocks (") && l.contains("ETA"))
    });
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    assert!(seen, "no progress bar:\n{screen}");
    let _ = std::fs::remove_dir_all(&dir);
}
