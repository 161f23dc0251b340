//! `otel-netprobe`: parse the command line, load the config, start the agent, wait for
//! shutdown. Everything else lives in the library.

use std::{
    io::Read as _, io::Write as _, net::SocketAddr, path::PathBuf, process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use otel_netprobe::{
    agent::Agent,
    config::{Config, HookOverride},
    ebpf,
    export::{http, otlp, summary::Summary},
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
        #[arg(long, default_value = "http://127.0.0.1:9464")]
        url: String,
        /// Print the JSON document instead of the table.
        #[arg(long)]
        json: bool,
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
    /// Listen address of the HTTP server (overrides http.listen).
    #[arg(long)]
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
    #[arg(long, value_parser = otel_netprobe::config::parse_duration)]
    poll_interval: Option<Duration>,
    /// OTLP endpoint to push metrics to (overrides otlp.endpoint and OTEL_EXPORTER_OTLP_ENDPOINT),
    /// e.g. http://otel-collector:4317.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// OTLP protocol: grpc or http/protobuf (overrides otlp.protocol and
    /// OTEL_EXPORTER_OTLP_PROTOCOL).
    #[arg(long, value_parser = otel_netprobe::config::OtlpProtocol::parse)]
    otlp_protocol: Option<otel_netprobe::config::OtlpProtocol>,
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Summary { url, json } => print_summary(&url, json),
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

fn effective_config(args: &RunArgs) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(l) = args.listen {
        cfg.http.listen = l;
    }
    if !args.interfaces.is_empty() {
        cfg.interfaces.include.clone_from(&args.interfaces);
    }
    cfg.interfaces.exclude.extend(args.exclude.iter().cloned());
    let mut overrides = args.hooks.clone();
    overrides.append(&mut cfg.interfaces.overrides);
    cfg.interfaces.overrides = overrides;
    if let Some(p) = args.poll_interval {
        cfg.flows.poll_interval = p;
    }
    cfg.otlp.apply_env(|k| std::env::var(k).ok())?;
    if let Some(e) = &args.otlp_endpoint {
        cfg.otlp.endpoint.clone_from(e);
    }
    if let Some(p) = args.otlp_protocol {
        cfg.otlp.protocol = p;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let cfg = effective_config(args)?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?)
        .with_target(false)
        .init();
    if !ebpf::has_privileges() {
        bail!("needs root or CAP_BPF and CAP_NET_ADMIN to load and attach eBPF programs");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    // Built before anything is loaded, so unusable TLS files stop the start with the reason.
    let otlp_client = if cfg.otlp.endpoint.is_empty() {
        None
    } else {
        let _guard = runtime.enter();
        Some(otlp::client::OtlpClient::new(&cfg.otlp).context("setting up the OTLP exporter")?)
    };
    let agent = Agent::start(&cfg)?;
    let result = runtime.block_on(async {
        let server = if cfg.http.enabled {
            let listener = tokio::net::TcpListener::bind(cfg.http.listen)
                .await
                .with_context(|| format!("binding the HTTP server to {} (http.listen)", cfg.http.listen))?;
            tracing::info!(listen = %cfg.http.listen, "serving /metrics, /api/v1/summary, /healthz");
            let app = http::router(agent.shared_snapshot(), cfg.flows.top_talkers, cfg.flows.poll_interval * 5);
            Some(tokio::spawn(async move { axum::serve(listener, app).await }))
        } else {
            None
        };
        let exporter = otlp_client.map(|client| {
            let resource = otlp::resource(&cfg.otlp, |k| std::env::var(k).ok());
            tokio::spawn(otlp::run(
                cfg.otlp.clone(),
                client,
                resource,
                agent.shared_snapshot(),
                agent.export_stats(),
            ))
        });
        shutdown_signal().await;
        if let Some(e) = exporter {
            e.abort();
        }
        tracing::info!("shutting down");
        if let Some(s) = server {
            s.abort();
        }
        anyhow::Ok(())
    });
    agent.stop();
    result
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A minimal HTTP/1.0 GET, enough to talk to our own server without a client library.
fn http_get(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream =
        std::net::TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("{url}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

fn print_summary(url: &str, json: bool) -> anyhow::Result<()> {
    let body = http_get(&format!("{}/api/v1/summary", url.trim_end_matches('/')))?;
    if json {
        println!("{body}");
    } else {
        let s: Summary = serde_json::from_str(&body).context("decoding the summary")?;
        print!("{}", s.to_table());
    }
    Ok(())
}
