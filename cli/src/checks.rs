//! Checks a job makes before it starts working, so that a run never fails at its end
//! for a reason known at its start, and the pieces that keep a long run's work:
//!
//! * [`prepare_out_dir`]: the output directory exists (or is created) and is a
//!   writable directory, checked before any computation;
//! * [`check_memory`]: an estimate of the bytes a job will hold, refused with a clear
//!   error when it exceeds the memory the system has available (instead of an abort
//!   on a failed allocation, or a capacity-overflow panic);
//! * [`append_line`]: appends one line to a log file with a single `O_APPEND` write,
//!   so that concurrent runs never lose each other's lines;
//! * [`interrupt`]: a SIGINT/SIGTERM flag that long loops poll to save their state
//!   before exiting;
//! * command-line value parsers that accept negative numbers and reject out-of-range
//!   values in one message style (`must be finite and positive, got -1`).

use std::io::Write as _;
use std::path::Path;

use crate::CliError;

/// Creates `dir` (and its parents) if needed and checks that it is a directory this
/// process can write into (by creating and removing a probe file). The error says what
/// is wrong: "exists and is not a directory", or the operating system's reason.
pub fn prepare_out_dir(dir: &Path) -> Result<(), CliError> {
    let bad = |reason: String| CliError::OutputDir {
        path: dir.to_path_buf(),
        reason,
    };
    // The first ancestor that exists must be a directory.
    if let Some(file) = dir.ancestors().find(|a| a.exists())
        && !file.is_dir()
        && !file.as_os_str().is_empty()
    {
        return Err(bad(if file == dir {
            "it exists and is not a directory (give --out a directory)".into()
        } else {
            format!("{} exists and is not a directory", file.display())
        }));
    }
    std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create it: {e}")))?;
    // Unique per call: jobs may run concurrently in one process (threads, tests).
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let k = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!(".neuralode-probe-{}-{k}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| bad(format!("cannot write into it: {e}")))
        .and_then(|()| {
            std::fs::remove_file(&probe).map_err(|e| bad(format!("cannot remove a file: {e}")))
        })
}

/// Bytes of memory the system can give this process now (`MemAvailable` of
/// `/proc/meminfo`), `None` where unknown.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Refuses a job whose estimated memory (`bytes`; `None` when the estimate itself
/// overflows) exceeds three quarters of what the system has available (the estimates
/// are rough, and other processes share the memory; where it is unknown, the largest
/// allocation possible). `what` names the job and the option that sizes it.
pub fn check_memory(what: &str, bytes: Option<u128>) -> Result<(), CliError> {
    let limit = available_memory().map_or(isize::MAX as u128, |b| u128::from(b) / 4 * 3);
    match bytes {
        Some(b) if b <= limit => Ok(()),
        _ => Err(CliError::TooLarge {
            what: what.to_owned(),
            needed: bytes.map_or_else(|| "more than 2^128 bytes".into(), format_bytes),
            available: format_bytes(limit),
        }),
    }
}

/// `bytes` in GB / MB with three significant digits.
pub fn format_bytes(bytes: u128) -> String {
    let b = bytes as f64;
    if b >= 1e12 {
        format!("{b:.3e} bytes")
    } else if b >= 1e9 {
        format!("{:.3} GB", b / 1e9)
    } else {
        format!("{:.3} MB", b / 1e6)
    }
}

/// Appends `line` (a newline is added) to `path` with one `write` on a file opened with
/// `O_APPEND`: concurrent appenders each add their whole line, none is lost or
/// interleaved (the kernel positions every append at the end of the file).
pub fn append_line(path: &Path, line: &str) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    // One write call: a short write of a regular file happens only on a full disk,
    // which `write_all` then reports.
    let n = file.write(&buf).map_err(io)?;
    file.write_all(&buf[n..]).map_err(io)?;
    file.sync_data().map_err(io)
}

/// A flag set by SIGINT (Ctrl-C) and SIGTERM once [`interrupt::install`] ran; long loops
/// poll [`interrupt::requested`] and save their state before exiting. A second signal
/// ends the process at once (exit status 130).
pub mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};

    static REQUESTED: AtomicBool = AtomicBool::new(false);

    /// Whether SIGINT or SIGTERM arrived since [`install`] (or [`clear`]).
    pub fn requested() -> bool {
        REQUESTED.load(Ordering::Relaxed)
    }

    /// Sets the flag as a signal would (for tests and for callers that stop a run).
    pub fn request() {
        REQUESTED.store(true, Ordering::Relaxed);
    }

    /// Clears the flag.
    pub fn clear() {
        REQUESTED.store(false, Ordering::Relaxed);
    }

    #[cfg(unix)]
    extern "C" fn on_signal(_: libc::c_int) {
        if REQUESTED.swap(true, Ordering::Relaxed) {
            // SAFETY: `_exit` is async-signal-safe.
            unsafe { libc::_exit(130) };
        }
    }

    /// Installs the handler of SIGINT and SIGTERM (which only sets the flag).
    pub fn install() {
        #[cfg(unix)]
        // SAFETY: the handler only touches an atomic and calls `_exit`, both
        // async-signal-safe; `signal` with a valid function pointer is sound.
        unsafe {
            let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::signal(libc::SIGINT, handler);
            libc::signal(libc::SIGTERM, handler);
        }
    }
}

/// Parses a finite, positive number (clap value parser; negative numbers reach it).
pub fn positive_f64(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err(format!("must be finite and positive, got {}", text.trim())),
        Err(_) => Err(format!("must be a finite positive number, got {text:?}")),
    }
}

/// Parses a finite number ≥ 0 (clap value parser).
pub fn nonnegative_f64(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!("must be finite and >= 0, got {}", text.trim())),
        Err(_) => Err(format!("must be a finite number >= 0, got {text:?}")),
    }
}

/// Parses a whole number ≥ 0 as `u64` (clap value parser): a negative number or a
/// fraction gets a message in the style of the others.
pub fn whole_u64(text: &str) -> Result<u64, String> {
    let t = text.trim();
    t.parse::<u64>().map_err(|_| match t.parse::<f64>() {
        Ok(v) if v < 0.0 => format!("must be a whole number >= 0, got {t}"),
        Ok(_) if t.parse::<i128>().is_ok() => format!("must be at most {}, got {t}", u64::MAX),
        _ => format!("must be a whole number >= 0, got {t:?}"),
    })
}

/// Parses a whole number ≥ 1 as `usize` (clap value parser).
pub fn count(text: &str) -> Result<usize, String> {
    let v = whole_u64(text).map_err(|e| e.replace(">= 0", ">= 1"))?;
    if v == 0 {
        return Err("must be a whole number >= 1, got 0".into());
    }
    usize::try_from(v).map_err(|_| format!("must be at most {}, got {v}", usize::MAX))
}

/// Parses a whole number ≥ 0 as `usize` (clap value parser).
pub fn whole_usize(text: &str) -> Result<usize, String> {
    let v = whole_u64(text)?;
    usize::try_from(v).map_err(|_| format!("must be at most {}, got {v}", usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("cli-checks-{name}-{}", std::process::id()))
    }

    #[test]
    fn out_dir_that_is_a_file_is_refused_before_work() {
        let file = temp("file");
        std::fs::write(&file, b"x").unwrap();
        let err = prepare_out_dir(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        let err = prepare_out_dir(&file.join("sub")).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        std::fs::remove_file(&file).unwrap();
        let dir = temp("dir").join("a/b");
        prepare_out_dir(&dir).unwrap();
        assert!(dir.is_dir());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "probe removed");
        std::fs::remove_dir_all(temp("dir")).unwrap();
    }

    #[test]
    fn concurrent_appends_keep_every_line() {
        let dir = temp("append");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("runs.jsonl");
        let (writers, lines) = (8, 50);
        std::thread::scope(|s| {
            for w in 0..writers {
                let path = &path;
                s.spawn(move || {
                    for i in 0..lines {
                        let line = format!(
                            "{{\"writer\":{w},\"line\":{i},\"pad\":\"{}\"}}",
                            "x".repeat(200 + w * 37)
                        );
                        append_line(path, &line).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let mut seen = std::collections::HashSet::new();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).expect("a whole JSON line");
            seen.insert((v["writer"].as_u64().unwrap(), v["line"].as_u64().unwrap()));
        }
        assert_eq!(text.lines().count(), writers * lines);
        assert_eq!(seen.len(), writers * lines);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn memory_estimates_refuse_what_cannot_fit() {
        assert!(check_memory("tiny", Some(1000)).is_ok());
        let err = check_memory("train --hidden 100000", Some(80_000_000_000_000))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--hidden 100000") && err.contains("GB"),
            "{err}"
        );
        assert!(check_memory("overflow", None).is_err());
    }

    #[test]
    fn value_parsers_accept_negatives_and_say_why() {
        assert_eq!(positive_f64("1e-3"), Ok(1e-3));
        assert_eq!(
            positive_f64("-1").unwrap_err(),
            "must be finite and positive, got -1"
        );
        assert!(positive_f64("nan").is_err());
        assert!(nonnegative_f64("0").is_ok());
        assert_eq!(
            whole_u64("-1").unwrap_err(),
            "must be a whole number >= 0, got -1"
        );
        assert_eq!(whole_u64("18446744073709551615"), Ok(u64::MAX));
        assert!(
            whole_u64("18446744073709551616")
                .unwrap_err()
                .contains("at most")
        );
        assert_eq!(
            count("0").unwrap_err(),
            "must be a whole number >= 1, got 0"
        );
        assert_eq!(
            count("-3").unwrap_err(),
            "must be a whole number >= 1, got -3"
        );
        assert!(count("2.5").is_err());
    }
}
