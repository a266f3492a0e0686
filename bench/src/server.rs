//! Starting and stopping a `scaff` server for `scaff-bench all`: finds the binary, runs
//! `scaff --log-format json --log warn,scaff=info serve --listen 127.0.0.1:0` in a fresh
//! temporary directory (its SQLite file and secrets key file live there), reads the bound
//! address from the JSON log line that carries an `address` field, and stops the server with
//! SIGTERM (then SIGKILL) when done. The server's log is kept in `server.log` in that
//! directory while it runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde_json::Value;

/// The `address` field of a JSON log line, if it has one (top level, or under `fields` when
/// events are not flattened).
pub fn address_from_log_line(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    v.get("address")
        .or_else(|| v.get("fields").and_then(|f| f.get("address")))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `sqlite` or `postgres` for a database URL.
pub fn store_of(url: &str) -> Option<&'static str> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some("postgres")
    } else if url.starts_with("sqlite:") {
        Some("sqlite")
    } else {
        None
    }
}

/// `debug` or `release` when the binary sits in a Cargo profile directory of that name.
pub fn build_of(binary: &Path) -> Option<&'static str> {
    match binary.parent()?.file_name()?.to_str()? {
        "debug" => Some("debug"),
        "release" => Some("release"),
        _ => None,
    }
}

/// Where `scaff` may have been built: `$CARGO_TARGET_DIR/{release,debug}/scaff`, then
/// `target/{release,debug}/scaff`.
pub fn candidate_binaries(cargo_target_dir: Option<&str>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in cargo_target_dir
        .filter(|d| !d.is_empty())
        .into_iter()
        .chain(std::iter::once("target"))
    {
        for profile in ["release", "debug"] {
            out.push(Path::new(dir).join(profile).join("scaff"));
        }
    }
    out
}

/// The `scaff` binary to run: `explicit` when given, else the most recently built candidate.
pub fn find_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("--scaff-bin {} is not a file", p.display());
    }
    let target = std::env::var("CARGO_TARGET_DIR").ok();
    let candidates = candidate_binaries(target.as_deref());
    candidates
        .iter()
        .filter_map(|p| {
            let modified = std::fs::metadata(p).and_then(|m| m.modified()).ok()?;
            p.is_file().then_some((modified, p))
        })
        .max_by_key(|(m, _)| *m)
        .map(|(_, p)| p.clone())
        .with_context(|| {
            format!(
                "no scaff binary found (looked at {}); build it with `cargo build -p scaff` or pass --scaff-bin",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// A running `scaff serve` that this process started.
pub struct Server {
    child: Child,
    dir: PathBuf,
    /// `http://ADDRESS`.
    pub url: String,
    /// The server's process id.
    pub pid: u32,
    /// The binary that runs.
    pub binary: PathBuf,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
}

impl Server {
    /// Starts `binary` on `database_url` (a SQLite file in the temporary directory when
    /// `None`) and waits up to 60 s for it to log its address.
    pub fn start(binary: &Path, database_url: Option<&str>) -> anyhow::Result<Server> {
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "scaff-bench-{stamp}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let url = match database_url {
            Some(u) => u.to_string(),
            None => format!("sqlite://{}", dir.join("scaff.db").display()),
        };
        let store = store_of(&url)
            .with_context(|| "--database-url must start with postgres:// or sqlite:")?;
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(binary)
            .args([
                "--log-format",
                "json",
                // `warn` for everything, but the line with the bound address is `info`.
                "--log",
                "warn,scaff=info",
                "serve",
                "--listen",
                "127.0.0.1:0",
                // The load driver calls the API without credentials, on loopback only.
                "--auth",
                "none",
                "--database-url",
                &url,
            ])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let mut server = Server {
            child,
            dir,
            url: String::new(),
            pid,
            binary: binary.to_path_buf(),
            store,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(address_from_log_line) {
                server.url = format!("http://{addr}");
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "scaff exited ({status}) before listening; its log:\n{}",
                    tail(&text, 20)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "scaff did not log its address within 60 s; its log:\n{}",
                    tail(&text, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far (its last `lines` lines).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(
            &std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default(),
            lines,
        )
    }

    /// Stops the server: SIGTERM, up to 20 s to finish, then SIGKILL. Returns its log's
    /// warnings and errors (lines), if any.
    pub fn stop(mut self) -> String {
        self.terminate();
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        log.lines()
            .filter(|l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v.get("level").and_then(Value::as_str).map(str::to_string))
                    .is_some_and(|lvl| lvl == "WARN" || lvl == "ERROR")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn terminate(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // Only this child, by its id.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_from_the_listening_line() {
        let line = r#"{"timestamp":"2026-11-24T03:59:04.1Z","level":"INFO","message":"scaff listening on http://127.0.0.1:41234","address":"127.0.0.1:41234","database":"sqlite://x","target":"scaff"}"#;
        assert_eq!(
            address_from_log_line(line).as_deref(),
            Some("127.0.0.1:41234")
        );
        let nested = r#"{"level":"INFO","fields":{"address":"127.0.0.1:9"}}"#;
        assert_eq!(
            address_from_log_line(nested).as_deref(),
            Some("127.0.0.1:9")
        );
    }

    #[test]
    fn other_lines_have_no_address() {
        assert_eq!(address_from_log_line(""), None);
        assert_eq!(address_from_log_line("scaff listening on 1.2.3.4"), None);
        assert_eq!(address_from_log_line(r#"{"level":"WARN"}"#), None);
        assert_eq!(address_from_log_line(r#"{"address":5}"#), None);
    }

    #[test]
    fn stores_and_builds_from_paths_and_urls() {
        assert_eq!(store_of("postgres://u@h/db"), Some("postgres"));
        assert_eq!(store_of("postgresql://u@h/db"), Some("postgres"));
        assert_eq!(store_of("sqlite:///tmp/x.db"), Some("sqlite"));
        assert_eq!(store_of("mysql://x"), None);
        assert_eq!(build_of(Path::new("/t/debug/scaff")), Some("debug"));
        assert_eq!(build_of(Path::new("/t/release/scaff")), Some("release"));
        assert_eq!(build_of(Path::new("/usr/bin/scaff")), None);
    }

    #[test]
    fn candidates_prefer_the_cargo_target_dir() {
        let c = candidate_binaries(Some("/cache/t"));
        assert_eq!(c[0], Path::new("/cache/t/release/scaff"));
        assert_eq!(c[1], Path::new("/cache/t/debug/scaff"));
        assert_eq!(c[3], Path::new("target/debug/scaff"));
        assert_eq!(candidate_binaries(None).len(), 2);
        assert_eq!(candidate_binaries(Some("")).len(), 2);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("", 5), "");
    }
}
