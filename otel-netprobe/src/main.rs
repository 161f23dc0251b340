//! `otel-netprobe`: parse the command line, load the config, start the agent, wait for
//! shutdown. Everything else lives in the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use otel_netprobe::{
    agent::Agent,
    config::{self, Config, HookOverride, OtlpProtocol},
    export::summary,
    metrics::summary::Summary,
};

/// Exact per-flow network telemetry from XDP/TC eBPF programs.
///
/// `run` counts every IP packet entering this network namespace (XDP on physical uplinks, TC on
/// virtual interfaces, TC egress for locally originated packets) and serves Prometheus metrics
/// at /metrics, a JSON summary at /api/v1/summary and /healthz. Needs root, or CAP_BPF +
/// CAP_NET_ADMIN (+ CAP_PERFMON on some kernels).
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (no arguments needed: all interfaces, embedded exporters).
    Run(RunArgs),
    /// Print the traffic summary of a running agent as a table.
    Summary {
        /// Base URL of the agent's HTTP server.
        #[arg(long, env = "NETPROBE_URL", default_value = "http://127.0.0.1:9464")]
        url: String,
        /// Print the JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Detach and unpin everything of ours in this network namespace: the pinned links and
    /// maps under pinning.path, and our cls_bpf filters (for operators, e.g. after an
    /// uninstall; idempotent; prints what it removed). Stop the agent first.
    Cleanup {
        /// YAML configuration file (for pinning.path).
        #[arg(long, short, env = "NETPROBE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and print the effective configuration.
    CheckConfig {
        /// The YAML file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// YAML configuration file; every field has a default (see the README's reference).
    #[arg(long, short, env = "NETPROBE_CONFIG")]
    config: Option<PathBuf>,
    /// Listen address of the HTTP server (overrides http.listen); an IPv4 host may be written
    /// in brackets too ([10.0.0.5]:9464), as the chart's `[$(HOST_IP)]:PORT` does.
    #[arg(long, value_parser = config::parse_listen)]
    listen: Option<SocketAddr>,
    /// Interface name pattern to attach to; repeatable (overrides interfaces.include).
    #[arg(long = "interface", short = 'i')]
    interfaces: Vec<String>,
    /// Interface name pattern to leave alone; repeatable (adds to interfaces.exclude).
    #[arg(long = "exclude")]
    exclude: Vec<String>,
    /// Force a hook for matching interfaces, as PATTERN=HOOK (hook: xdp, xdp_generic, tc, none);
    /// repeatable (prepended to interfaces.overrides).
    #[arg(long = "hook", value_parser = parse_override)]
    hooks: Vec<HookOverride>,
    /// Kernel map read interval (overrides flows.poll_interval), e.g. 500ms.
    #[arg(long, value_parser = config::parse_duration)]
    poll_interval: Option<Duration>,
    /// OTLP endpoint to push metrics to (overrides otlp.endpoint and OTEL_EXPORTER_OTLP_ENDPOINT),
    /// e.g. http://otel-collector:4317.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// OTLP protocol: grpc or http/protobuf (overrides otlp.protocol and
    /// OTEL_EXPORTER_OTLP_PROTOCOL).
    #[arg(long, value_parser = OtlpProtocol::parse)]
    otlp_protocol: Option<OtlpProtocol>,
    /// Pin nothing (overrides pinning.enabled): a restart then loses the kernel's counts.
    #[arg(long, env = "NETPROBE_NO_PINNING")]
    no_pinning: bool,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "NETPROBE_LOG", default_value = "info")]
    log: String,
}

fn parse_override(s: &str) -> Result<HookOverride, String> {
    let (name, hook) = s.split_once('=').ok_or("expected PATTERN=HOOK")?;
    let hook = serde_norway::from_str(hook)
        .map_err(|_| format!("unknown hook {hook:?}: use xdp, xdp_generic, tc or none"))?;
    Ok(HookOverride {
        name: name.into(),
        hook,
    })
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run(args) => run(&args),
        Command::Summary { url, json } => print_summary(&url, json),
        Command::Cleanup { config } => cleanup(config.as_deref()),
        Command::CheckConfig { config } => Config::from_file(&config)
            .map(|c| println!("{c:#?}"))
            .map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otel-netprobe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The file (or the defaults), then the `OTEL_*` environment, then the flags.
fn effective_config(args: &RunArgs) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    cfg.otlp.apply_env(|k| std::env::var(k).ok())?;
    if let Some(l) = args.listen {
        cfg.http.listen = l;
    }
    if !args.interfaces.is_empty() {
        cfg.interfaces.include.clone_from(&args.interfaces);
    }
    cfg.interfaces.exclude.extend(args.exclude.iter().cloned());
    cfg.interfaces
        .overrides
        .splice(0..0, args.hooks.iter().cloned());
    cfg.flows.poll_interval = args.poll_interval.unwrap_or(cfg.flows.poll_interval);
    cfg.otlp.endpoint = args.otlp_endpoint.clone().unwrap_or(cfg.otlp.endpoint);
    cfg.otlp.protocol = args.otlp_protocol.unwrap_or(cfg.otlp.protocol);
    if args.no_pinning {
        cfg.pinning.enabled = false;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = effective_config(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Before the agent allocates: each cycle's large blocks go back to the system when freed.
    otel_netprobe::heap::return_large_blocks();
    let agent = Agent::start(&cfg)?;
    agent.wait_for_signal();
    tracing::info!("shutting down");
    agent.stop_for_signal();
    Ok(())
}

fn cleanup(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    let cfg = match config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    let removed = otel_netprobe::ebpf::links::cleanup(&cfg.pinning);
    for line in &removed {
        println!("{line}");
    }
    println!("removed {} item(s)", removed.len());
    Ok(())
}

fn print_summary(url: &str, json: bool) -> anyhow::Result<()> {
    let body = summary::fetch(url)?;
    if json {
        println!("{body}");
    } else {
        let s: Summary = serde_json::from_str(&body).context("decoding the summary")?;
        print!("{}", summary::table(&s));
    }
    Ok(())
}
