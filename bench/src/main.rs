//! `scaff-bench`: a load driver for Scaff's reference workloads (`shared/peers/WORKLOADS.md`)
//! that uses only the public REST API, as any load tester would.
//!
//! - `scaff-bench w1|w2|w3 --url URL --concurrency C --runs N [--json FILE] [--chart FILE]`
//!   drives a running server, closed loop, and prints Markdown tables (HDR percentiles,
//!   throughput, errors by kind, RSS when `--server-pid` is given).
//! - `scaff-bench all` starts a `scaff` server itself (SQLite in a temporary directory, or
//!   `--database-url`), runs W1, W2 and W3 one after another, prints one table and stops it.

mod api;
mod chart;
mod report;
mod server;
mod stats;
mod sys;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::api::{Api, Calls};
use crate::report::{Meta, Outcome};
use crate::workloads::Options;

/// Load driver for Scaff: W1 chain10, W2 human loop, W3 parked, over the REST API.
#[derive(Debug, Parser)]
#[command(name = "scaff-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// W1 chain10: runs of 10 checkpointed `set` steps, each timed from its start until it is
    /// observed completed (default 3,000 runs).
    W1(DriveArgs),
    /// W2 human loop: start → resume the form → GET the approvers' tokens → resume one
    /// approval → completed, each call timed (default 1,000 runs).
    W2(DriveArgs),
    /// W3 parked: park N runs on a form, measure the server's RSS (with --server-pid), then
    /// resume a random --resume of them (default 10,000 parked, 1,000 resumed).
    W3(DriveArgs),
    /// Start a scaff server, run W1, W2 and W3 against it, print one table, stop it.
    #[command(long_about = ALL_ABOUT)]
    All(AllArgs),
}

const ALL_ABOUT: &str = "\
Start a scaff server, run W1, W2 and W3 against it, print one table, stop it.

The server is `scaff --log-format json --log warn,scaff=info serve --listen 127.0.0.1:0`, run
in a new temporary directory (removed afterwards). Without --database-url it uses a SQLite file
there. With --database-url postgres://USER@HOST:PORT/DB the database must already exist (for
example `createdb -h 127.0.0.1 -U postgres scaff_bench`); the server applies its migrations.
Runs are added to it, so use a fresh database for comparable figures.

The binary is --scaff-bin, else the most recently built of $CARGO_TARGET_DIR/{release,debug}/scaff
and target/{release,debug}/scaff. Build it first: `cargo build --release -p scaff` for figures
worth comparing (a debug build is several times slower).";

/// Options of `w1`, `w2`, `w3`.
#[derive(Debug, Args)]
struct DriveArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Virtual users: runs in flight at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Runs to complete (W3: runs to park). Default: 3,000 (W1), 1,000 (W2), 10,000 (W3).
    #[arg(long)]
    runs: Option<usize>,
    /// W3: how many parked runs to resume (all when fewer are parked).
    #[arg(long, default_value_t = 1000)]
    resume: usize,
    #[command(flatten)]
    common: CommonArgs,
    /// Process id of the server, to report its RSS (read from /proc/<pid>/status).
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's store, for the report (`sqlite`, `postgres`).
    #[arg(long)]
    store: Option<String>,
    /// Write the JSON report (peer-harness shape) to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Options shared by every command.
#[derive(Debug, Args, Clone)]
struct CommonArgs {
    /// Uncounted warm-up runs before measuring. Default: a tenth of the runs, at most 100.
    #[arg(long)]
    warmup: Option<usize>,
    /// `wait_ms` sent with every start and resume (with `--calls settled`), and with every
    /// `GET /v1/executions/{id}` that follows a run until it settles (the server's maximum is
    /// 60000 by default).
    #[arg(long, default_value_t = 30_000)]
    wait_ms: u64,
    /// What a start or resume call waits for: `settled` sends `wait_ms`, so the call returns
    /// once the run is waiting or finished; `ack` sends none, so the call returns once the
    /// server has durably accepted it, and the run is then followed with
    /// `GET /v1/executions/{id}?wait_ms=` (timed separately as "observed").
    #[arg(long, value_enum, default_value_t = Calls::Settled)]
    calls: Calls,
    /// Stop taking new runs after this many seconds per phase (runs in flight finish).
    #[arg(long, default_value_t = 300)]
    max_seconds: u64,
    /// Write an SVG of the latency percentile curves to this file.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Options of `all`.
#[derive(Debug, Args)]
struct AllArgs {
    /// PostgreSQL URL of an existing database (`postgres://postgres@127.0.0.1:5432/scaff_bench`).
    /// Default: SQLite in the temporary directory.
    #[arg(long)]
    database_url: Option<String>,
    /// Runs of W1 and of W2, and runs parked by W3 (unless --w3-parked).
    #[arg(long, default_value_t = 300)]
    runs: usize,
    /// Virtual users.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// W3: runs to park (default: --runs).
    #[arg(long)]
    w3_parked: Option<usize>,
    /// W3: how many parked runs to resume.
    #[arg(long, default_value_t = 1000)]
    resume: usize,
    /// The scaff binary (default: the most recently built one in the Cargo target directories).
    #[arg(long)]
    scaff_bin: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
    /// Write the JSON reports as DIR/scaff-W1.json, DIR/scaff-W2.json, DIR/scaff-W3.json.
    #[arg(long)]
    json_dir: Option<PathBuf>,
}

fn default_warmup(runs: usize) -> usize {
    (runs / 10).min(100)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scaff-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scaff-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::W1(a) => drive(Which::W1, a).await,
        Cmd::W2(a) => drive(Which::W2, a).await,
        Cmd::W3(a) => drive(Which::W3, a).await,
        Cmd::All(a) => all(a).await,
    }
}

#[derive(Debug, Clone, Copy)]
enum Which {
    W1,
    W2,
    W3,
}

async fn run_one(which: Which, api: &Api, opts: &Options) -> anyhow::Result<Outcome> {
    Ok(match which {
        Which::W1 => Outcome::W1(Box::new(workloads::w1(api, opts).await?)),
        Which::W2 => Outcome::W2(Box::new(workloads::w2(api, opts).await?)),
        Which::W3 => Outcome::W3(Box::new(workloads::w3(api, opts).await?)),
    })
}

async fn drive(which: Which, a: DriveArgs) -> anyhow::Result<ExitCode> {
    let runs = a.runs.unwrap_or(match which {
        Which::W1 => 3000,
        Which::W2 => 1000,
        Which::W3 => 10_000,
    });
    let warmup = a.common.warmup.unwrap_or_else(|| default_warmup(runs));
    let api = Api::new(&a.url, a.concurrency, a.common.wait_ms, a.common.calls)?;
    api.healthy()
        .await
        .with_context(|| format!("the server at {} does not answer /healthz", a.url))?;
    let opts = Options {
        runs,
        concurrency: a.concurrency,
        warmup,
        max_time: Duration::from_secs(a.common.max_seconds),
        resume: a.resume,
        server_pid: a.server_pid,
        progress: !a.common.quiet,
    };
    let meta = Meta {
        store: a.store.clone(),
        concurrency: a.concurrency,
        runs,
        warmup,
        wait_ms: a.common.wait_ms,
        calls: a.common.calls,
        max_seconds: a.common.max_seconds,
        url: a.url.clone(),
        binary: None,
        build: None,
    };
    let outcome = run_one(which, &api, &opts).await?;
    let outcomes = [outcome];
    finish(
        &meta,
        &outcomes,
        a.json.as_deref(),
        None,
        a.common.chart.as_deref(),
    )
}

async fn all(a: AllArgs) -> anyhow::Result<ExitCode> {
    let binary = server::find_binary(a.scaff_bin.as_deref())?;
    let server = server::Server::start(&binary, a.database_url.as_deref())?;
    eprintln!(
        "scaff-bench: started {} (pid {}, {}) at {}",
        binary.display(),
        server.pid,
        server.store,
        server.url
    );
    let result = all_workloads(&a, &server).await;
    let warnings = server.stop();
    if !warnings.is_empty() {
        let lines: Vec<&str> = warnings.lines().collect();
        eprintln!(
            "scaff-bench: the server logged {} warning/error line(s); the last ones:\n{}",
            lines.len(),
            lines[lines.len().saturating_sub(5)..].join("\n")
        );
    }
    result
}

async fn all_workloads(a: &AllArgs, server: &server::Server) -> anyhow::Result<ExitCode> {
    let warmup = a.common.warmup.unwrap_or_else(|| default_warmup(a.runs));
    let api = Api::new(&server.url, a.concurrency, a.common.wait_ms, a.common.calls)?;
    api.healthy().await.with_context(|| {
        format!(
            "the server does not answer /healthz; its log:\n{}",
            server.log_tail(20)
        )
    })?;
    let base = Options {
        runs: a.runs,
        concurrency: a.concurrency,
        warmup,
        max_time: Duration::from_secs(a.common.max_seconds),
        resume: a.resume,
        server_pid: Some(server.pid),
        progress: !a.common.quiet,
    };
    let mut outcomes = Vec::new();
    for which in [Which::W1, Which::W2, Which::W3] {
        let opts = match which {
            Which::W3 => Options {
                runs: a.w3_parked.unwrap_or(a.runs),
                ..base.clone()
            },
            _ => base.clone(),
        };
        match run_one(which, &api, &opts).await {
            Ok(o) => outcomes.push(o),
            Err(e) => eprintln!("scaff-bench: {which:?} could not run: {e:#}"),
        }
    }
    let meta = Meta {
        store: Some(server.store.to_string()),
        concurrency: a.concurrency,
        runs: a.runs,
        warmup,
        wait_ms: a.common.wait_ms,
        calls: a.common.calls,
        max_seconds: a.common.max_seconds,
        url: server.url.clone(),
        binary: Some(server.binary.display().to_string()),
        build: server::build_of(&server.binary).map(str::to_string),
    };
    let code = finish(
        &meta,
        &outcomes,
        None,
        a.json_dir.as_deref(),
        a.common.chart.as_deref(),
    )?;
    if outcomes.len() < 3 {
        return Ok(ExitCode::FAILURE);
    }
    Ok(code)
}

/// Prints the tables, writes the JSON report(s) and the chart. Exit code 2 when any error
/// was counted (the figures are still written).
fn finish(
    meta: &Meta,
    outcomes: &[Outcome],
    json_file: Option<&Path>,
    json_dir: Option<&Path>,
    chart_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    print!("{}", report::table(meta, outcomes));
    if let Some(path) = json_file
        && let Some(o) = outcomes.first()
    {
        write_json(path, &report::to_json(meta, o))?;
    }
    if let Some(dir) = json_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for o in outcomes {
            write_json(
                &dir.join(format!("scaff-{}.json", o.name())),
                &report::to_json(meta, o),
            )?;
        }
    }
    if let Some(path) = chart_file {
        let names: Vec<&str> = outcomes.iter().map(Outcome::name).collect();
        let title = format!(
            "scaff {} · {} · C={} · latency percentiles",
            names.join("+"),
            meta.store.as_deref().unwrap_or("?"),
            meta.concurrency
        );
        let svg = chart::percentile_svg(&title, &report::chart_series(meta.calls, outcomes));
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("scaff-bench: wrote {}", path.display());
    }
    let errors: u64 = outcomes.iter().map(Outcome::error_total).sum();
    Ok(if errors > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    eprintln!("scaff-bench: wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_commands() {
        let cli = Cli::try_parse_from([
            "scaff-bench",
            "w2",
            "--url",
            "http://127.0.0.1:9",
            "--concurrency",
            "7",
            "--runs",
            "11",
            "--json",
            "out.json",
            "--chart",
            "out.svg",
        ])
        .expect("parses");
        let Cmd::W2(a) = cli.command else {
            panic!("w2")
        };
        assert_eq!((a.concurrency, a.runs), (7, Some(11)));
        assert_eq!(a.common.chart.as_deref(), Some(Path::new("out.svg")));

        let cli = Cli::try_parse_from([
            "scaff-bench",
            "all",
            "--runs",
            "300",
            "--concurrency",
            "50",
            "--database-url",
            "postgres://postgres@127.0.0.1/scaff_bench",
        ])
        .expect("parses");
        let Cmd::All(a) = cli.command else {
            panic!("all")
        };
        assert_eq!((a.runs, a.concurrency), (300, 50));
    }

    #[test]
    fn calls_defaults_to_settled_and_parses_ack_for_every_command() {
        let common = |args: &[&str]| -> CommonArgs {
            let cli = Cli::try_parse_from(args).expect("parses");
            match cli.command {
                Cmd::W1(a) | Cmd::W2(a) | Cmd::W3(a) => a.common,
                Cmd::All(a) => a.common,
            }
        };
        for cmd in ["w1", "w2", "w3", "all"] {
            assert_eq!(common(&["scaff-bench", cmd]).calls, Calls::Settled, "{cmd}");
            let ack = common(&["scaff-bench", cmd, "--calls", "ack"]);
            assert_eq!(ack.calls, Calls::Ack, "{cmd}");
            assert_eq!(
                ack.wait_ms, 30_000,
                "{cmd}: ack keeps --wait-ms for settling"
            );
            assert_eq!(
                common(&["scaff-bench", cmd, "--calls=settled"]).calls,
                Calls::Settled,
                "{cmd}"
            );
        }
        assert!(Cli::try_parse_from(["scaff-bench", "w2", "--calls", "fast"]).is_err());
    }

    #[test]
    fn warmup_defaults_to_a_tenth_capped_at_100() {
        assert_eq!(default_warmup(300), 30);
        assert_eq!(default_warmup(10_000), 100);
        assert_eq!(default_warmup(5), 0);
    }
}
