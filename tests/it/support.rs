//! Shared test fixtures: a fresh database per test (a SQLite file in a temp dir, or a new
//! PostgreSQL database dropped afterwards), the API as a tower service, the real binary as a
//! child process, and a deadline-bounded wait.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use scaff::api::{self, AppState, Limits};
use scaff::server::{self, Settings};
use scaff::store::{self, StoreOptions};
use scaff_core::store::Store;
use serde_json::Value;
use tower::ServiceExt;

/// The PostgreSQL server tests use; `TEST_DATABASE_URL` overrides it.
pub fn pg_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Whether PostgreSQL must be present (CI) rather than skipped when absent.
fn pg_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A database of its own for one test, removed when dropped.
pub struct TestDb {
    /// The store, migrated.
    pub store: Arc<dyn Store>,
    /// Its URL, for starting the binary against it.
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh SQLite file.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("scaff.db").display());
        let store = store::connect(&url, &StoreOptions::default())
            .await
            .expect("sqlite store");
        TestDb {
            store,
            url,
            pg_name: None,
            _dir: Some(dir),
        }
    }

    /// The in-memory reference store (`scaff_core::store::MemoryStore`); it has no URL, so
    /// only tests that never use `url` run on it.
    pub fn memory() -> TestDb {
        TestDb {
            store: Arc::new(scaff_core::store::MemoryStore::new()),
            url: String::new(),
            pg_name: None,
            _dir: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a note) when no server answers outside CI.
    pub async fn postgres() -> Option<TestDb> {
        let admin_url = pg_admin_url();
        let admin =
            match tokio::time::timeout(Duration::from_secs(5), sqlx::PgPool::connect(&admin_url))
                .await
            {
                Ok(Ok(pool)) => pool,
                Ok(Err(e)) => return pg_unavailable(&e.to_string()),
                Err(_) => return pg_unavailable("connection timed out"),
            };
        let name = format!("scaff_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let url = with_database(&admin_url, &name);
        let store = store::connect(
            &url,
            &StoreOptions {
                max_connections: 5,
                migrate: true,
            },
        )
        .await
        .expect("postgres store");
        Some(TestDb {
            store,
            url,
            pg_name: Some(name),
            _dir: None,
        })
    }
}

fn pg_unavailable(why: &str) -> Option<TestDb> {
    assert!(
        !pg_required(),
        "PostgreSQL is required under CI but unreachable at {}: {why}",
        pg_admin_url()
    );
    eprintln!("note: PostgreSQL unreachable ({why}); skipping the PostgreSQL half of this test");
    None
}

/// The admin URL with its database replaced.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let prefix = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin_url = pg_admin_url();
        // Drop runs inside the test's runtime; use a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Generates one `#[tokio::test]` per backend for each listed test body
/// (`async fn name(db: &TestDb)`), in modules `sqlite` and `postgres`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::support::TestDb::sqlite().await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = $crate::support::TestDb::postgres().await else { return };
                    super::$name(&db).await;
                }
            )*
        }
    };
}

/// Like [`on_both_stores!`], plus a module `memory` running the same bodies on the in-memory
/// reference store, for tests that do not need `db.url`.
#[macro_export]
macro_rules! on_all_stores {
    ($($name:ident),* $(,)?) => {
        $crate::on_both_stores!($($name),*);
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = $crate::support::TestDb::memory();
                    super::$name(&db).await;
                }
            )*
        }
    };
}

/// A response as a test sees it.
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: axum::http::HeaderMap,
    /// Body parsed as JSON (`Value::Null` when empty or not JSON).
    pub json: Value,
    /// Body as text.
    pub text: String,
}

impl Reply {
    /// The Content-Type header.
    pub fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts an RFC 9457 problem with this status, and returns its JSON.
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.content_type(), "application/problem+json");
        assert_eq!(self.json["status"], status);
        assert!(
            self.json["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:scaff:problem:"))
        );
        assert!(self.json["title"].is_string() && self.json["detail"].is_string());
        &self.json
    }
}

/// The API router over a test database, called in-process.
pub struct TestApp {
    /// The application state (runtime, store, tokens) behind the router.
    pub state: AppState,
    router: axum::Router,
}

impl TestApp {
    /// The router with default settings.
    pub async fn new(db: &TestDb) -> TestApp {
        Self::with_settings(db, Settings::default()).await
    }

    /// The router with custom limits.
    pub async fn with_limits(db: &TestDb, limits: Limits) -> TestApp {
        Self::with_settings(
            db,
            Settings {
                limits,
                ..Settings::default()
            },
        )
        .await
    }

    /// The router with authentication required: API keys from `db`'s store, and JWTs as
    /// `jwt` describes.
    pub async fn with_auth(db: &TestDb, jwt: scaff::auth::JwtSettings) -> TestApp {
        let verifier = scaff::auth::JwtVerifier::new(&jwt).expect("JWT settings");
        Self::with_settings(
            db,
            Settings {
                auth: Arc::new(scaff::auth::Authenticator::required(verifier)),
                ..Settings::default()
            },
        )
        .await
    }

    /// The router with custom settings.
    pub async fn with_settings(db: &TestDb, settings: Settings) -> TestApp {
        let state = server::build(db.store.clone(), settings)
            .await
            .expect("server state");
        TestApp {
            state: state.clone(),
            router: api::router(state),
        }
    }

    /// Sends a request.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }

    /// GET a path.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).expect("request"))
            .await
    }

    /// POST a body with a content type.
    pub async fn post(&self, path: &str, content_type: &str, body: impl Into<Body>) -> Reply {
        self.send(
            Request::post(path)
                .header(header::CONTENT_TYPE, content_type)
                .body(body.into())
                .expect("request"),
        )
        .await
    }

    /// POST YAML text.
    pub async fn post_yaml(&self, path: &str, yaml: &str) -> Reply {
        self.post(path, "application/yaml", yaml.to_string()).await
    }

    /// Serves the router over real HTTP on a free loopback port, for as long as the test's
    /// runtime lives; returns the address.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let router = self.router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        addr
    }
}

/// Reads an example workflow (`examples/`, copies of `../shared/examples`).
pub fn example(name: &str) -> String {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A clock that moves one millisecond forward at every reading, so consecutive writes get
/// distinct timestamps without sleeping.
#[derive(Debug)]
pub struct TickingClock {
    micros: std::sync::atomic::AtomicI64,
}

impl Default for TickingClock {
    fn default() -> Self {
        Self {
            micros: std::sync::atomic::AtomicI64::new(1_800_000_000_000_000),
        }
    }
}

impl scaff_core::run::Clock for TickingClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let t = self
            .micros
            .fetch_add(1_000, std::sync::atomic::Ordering::SeqCst);
        chrono::DateTime::from_timestamp_micros(t).unwrap_or_default()
    }
}

/// Polls `check` until it yields a value or `deadline` passes.
pub async fn wait_for<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The real `scaff` binary serving on a free loopback port; killed when dropped.
pub struct Server {
    /// The child process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Every line it wrote to stderr so far.
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    /// The lines the server has logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Starts `scaff serve --listen 127.0.0.1:0 --auth none` in `cwd` with extra env, and
    /// waits (bounded) for the log line that names the bound address.
    pub fn start(cwd: &std::path::Path, envs: &[(&str, &str)], args: &[&str]) -> Server {
        let mut all = vec!["--auth", "none"];
        all.extend_from_slice(args);
        Self::start_secured(cwd, envs, &all)
    }

    /// Like [`Server::start`], but with authentication as configured by `args` (required,
    /// unless they say otherwise).
    pub fn start_secured(cwd: &std::path::Path, envs: &[(&str, &str)], args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scaff"));
        cmd.current_dir(cwd)
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("SCAFF_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn scaff");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = kept.lock() {
                    l.push(line.clone());
                }
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if let Some(addr) = v["address"].as_str().and_then(|a| a.parse().ok()) {
                        let _ = tx.send(Ok::<SocketAddr, String>(addr));
                    }
                } else {
                    let _ = tx.send(Err(line));
                }
            }
        });
        let until = Instant::now() + Duration::from_secs(60);
        let mut other = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(addr)) => return Server { child, addr, logs },
                Ok(Err(line)) => other.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("scaff did not report its address in time; stderr: {other:?}");
                }
            }
        }
    }

    /// `http://ADDR` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message an [`SmtpSink`] accepted.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as sent after `DATA` (headers and encoded body), dot-stuffing undone.
    pub data: String,
}

impl ReceivedMail {
    /// A header's value (folded lines joined), by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = value.as_mut() {
                    v.push(' ');
                    v.push_str(line.trim_start());
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_string());
            }
        }
        value
    }

    /// The body, decoded from its transfer encoding (7bit, quoted-printable or base64), with
    /// `\n` line ends.
    pub fn body(&self) -> String {
        let raw = self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bytes = match encoding.as_str() {
            "quoted-printable" => decode_quoted_printable(raw),
            "base64" => {
                use base64::Engine;
                let compact: String = raw.split_whitespace().collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("base64 body")
            }
            _ => raw.as_bytes().to_vec(),
        };
        String::from_utf8(bytes)
            .expect("utf-8 body")
            .replace("\r\n", "\n")
    }
}

fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("quoted-printable escape"));
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[derive(Default)]
struct SinkState {
    mails: Vec<ReceivedMail>,
    refuse_left: usize,
    refused: usize,
}

/// A minimal SMTP server on a loopback port that records every message it accepts, and can
/// refuse (451, a transient error) the first few `MAIL` commands to exercise retries.
pub struct SmtpSink {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<std::sync::Mutex<SinkState>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    /// A sink that accepts everything.
    pub async fn start() -> SmtpSink {
        Self::refusing(0).await
    }

    /// A sink that answers 451 to the first `n` `MAIL` commands.
    pub async fn refusing(n: usize) -> SmtpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP sink");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(std::sync::Mutex::new(SinkState {
            refuse_left: n,
            ..SinkState::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(smtp_session(socket, shared.clone()));
            }
        });
        SmtpSink { addr, state, task }
    }

    /// `smtp://ADDR`, for `SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The messages accepted so far.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.state.lock().expect("sink state").mails.clone()
    }

    /// How many `MAIL` commands were refused.
    pub fn refused(&self) -> usize {
        self.state.lock().expect("sink state").refused
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The address inside `<…>` of a `MAIL FROM:`/`RCPT TO:` argument.
fn angle_address(arg: &str) -> String {
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_string(),
        _ => arg.trim().to_string(),
    }
}

async fn smtp_session(socket: tokio::net::TcpStream, state: Arc<std::sync::Mutex<SinkState>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (read, mut write) = socket.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    if write.write_all(b"220 sink ESMTP ready\r\n").await.is_err() {
        return;
    }
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let answer: &str = if upper.starts_with("EHLO") {
            "250-sink greets you\r\n250 HELP\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            "250 OK\r\n"
        } else if upper.starts_with("RSET") {
            from = None;
            to.clear();
            "250 OK\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            let mut s = state.lock().expect("sink state");
            if s.refuse_left > 0 {
                s.refuse_left -= 1;
                s.refused += 1;
                "451 4.3.0 try again later\r\n"
            } else {
                from = Some(angle_address(&line["MAIL FROM:".len()..]));
                to.clear();
                "250 OK\r\n"
            }
        } else if upper.starts_with("RCPT TO:") {
            if from.is_some() {
                to.push(angle_address(&line["RCPT TO:".len()..]));
                "250 OK\r\n"
            } else {
                "503 5.5.1 MAIL first\r\n"
            }
        } else if upper == "DATA" {
            if from.is_none() || to.is_empty() {
                "503 5.5.1 no recipients\r\n"
            } else {
                if write
                    .write_all(b"354 end with <CRLF>.<CRLF>\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut data: Vec<String> = Vec::new();
                loop {
                    match lines.next_line().await {
                        Ok(Some(l)) if l == "." => break,
                        // Dot-stuffing: a line's leading dot was doubled.
                        Ok(Some(l)) => data.push(match l.strip_prefix('.') {
                            Some(rest) => rest.to_string(),
                            None => l,
                        }),
                        _ => return,
                    }
                }
                state.lock().expect("sink state").mails.push(ReceivedMail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data: data.join("\r\n"),
                });
                "250 2.0.0 queued\r\n"
            }
        } else if upper.starts_with("QUIT") {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            "502 5.5.2 command not recognized\r\n"
        };
        if write.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Personal data and credentials a run may carry, one per redaction pattern: (input key, the
/// value, a fragment that must not appear anywhere outside the run's context — also found in
/// the value's percent-encoded form).
pub const PERSONAL: &[(&str, &str, &str)] = &[
    ("email", "jane.doe@customer.example", "jane.doe"),
    ("card", "4111111111111111", "4111111111111111"),
    ("phone", "+14155552671", "4155552671"),
    ("ssn", "123-45-6789", "123-45-6789"),
    (
        "auth",
        "Bearer eyJhbGciOiJIUzI1NiJ9.cGF5bG9hZA.c2lnbmF0dXJl",
        "cGF5bG9hZA",
    ),
    ("note", "api_key=zq81mbx7tq2kfj4n", "zq81mbx7tq2kfj4n"),
];

/// The run inputs holding every [`PERSONAL`] value.
pub fn personal_inputs() -> Value {
    Value::Object(
        PERSONAL
            .iter()
            .map(|(k, v, _)| (k.to_string(), Value::String(v.to_string())))
            .collect(),
    )
}

/// An `api_call` query sending every [`PERSONAL`] input (so it shows up in the recorded URL).
pub fn personal_query() -> Value {
    Value::Object(
        PERSONAL
            .iter()
            .map(|(k, _, _)| {
                (
                    k.to_string(),
                    Value::String(format!("{{{{ inputs.{k} }}}}")),
                )
            })
            .collect(),
    )
}
