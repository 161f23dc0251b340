//! The embedded HTTP server over TLS (`http.tls`), over a real socket on loopback, asked by
//! curl as Prometheus would: with a client certificate of the configured CA `/metrics` and the
//! summary answer; without one (or with one of another CA) only `/healthz` does, as the
//! kubelet's HTTPS probes need; plain HTTP gets no answer. Bad TLS files are refused with the
//! key named.

mod common;

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use otel_netprobe::{
    config::HttpTlsConfig,
    export::{http, serve},
    telemetry::Telemetry,
};

/// Temp dir with the test CA's files; removed on drop.
struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn certs(tag: &str) -> Dir {
    let d = Dir(std::env::temp_dir().join(common::unique(tag)));
    std::fs::create_dir_all(&d.0).expect("dir");
    common::certs::make(&d.0);
    d
}

fn path(d: &Path, f: &str) -> String {
    d.join(f).display().to_string()
}

/// `curl` of `url` with extra args; (HTTP status, body), status 0 when no HTTP answer came.
fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn metrics_need_a_client_certificate_and_healthz_does_not() {
    let ca = certs("tls");
    let other = certs("other");
    let d = &ca.0;
    let tls = serve::tls::server_config(&HttpTlsConfig {
        cert_file: path(d, "server.pem"),
        key_file: path(d, "server.key"),
        client_ca_file: path(d, "ca.pem"),
    })
    .expect("a TLS config")
    .expect("TLS on");
    assert!(tls.client_auth);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let telemetry = Arc::new(Telemetry::default());
    let shared = http::shared_empty();
    let app = http::router(
        Arc::clone(&shared),
        Arc::clone(&telemetry),
        Duration::from_secs(3600),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let server = {
        let _guard = rt.enter();
        serve::Server::spawn_tls(
            listener,
            app,
            serve::Limits::default(),
            Arc::clone(&telemetry),
            Some(tls),
        )
    };
    let base = format!("https://127.0.0.1:{}", server.addr().port());
    let cacert = path(d, "ca.pem");
    let trusted = ["--cacert", &cacert];
    let (cert, key) = (path(d, "client.pem"), path(d, "client.key"));
    let with_cert = ["--cacert", &cacert, "--cert", &cert, "--key", &key];
    let (ocert, okey) = (path(&other.0, "client.pem"), path(&other.0, "client.key"));
    let foreign = ["--cacert", &cacert, "--cert", &ocert, "--key", &okey];

    let (code, body) = curl(&format!("{base}/metrics"), &with_cert);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("netprobe_agent_"), "{body}");
    let (code, body) = curl(&format!("{base}/api/v1/summary"), &with_cert);
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with('{'), "{body}");

    for path in ["/metrics", "/api/v1/summary"] {
        let (code, body) = curl(&format!("{base}{path}"), &trusted);
        assert_eq!(code, 403, "{path} without a client certificate: {body}");
        assert!(body.contains("client certificate"), "{body}");
    }
    // /healthz answers without one (the snapshot never had a read cycle: 503, but an answer,
    // exactly as over plain HTTP).
    let (code, _) = curl(&format!("{base}/healthz"), &trusted);
    let (plain_code, _) = {
        let app = http::router(
            Arc::clone(&shared),
            Arc::clone(&telemetry),
            Duration::from_secs(3600),
        );
        let l = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let s = {
            let _g = rt.enter();
            serve::Server::spawn(l, app, serve::Limits::default(), Arc::clone(&telemetry))
        };
        let r = curl(
            &format!("http://127.0.0.1:{}/healthz", s.addr().port()),
            &[],
        );
        rt.block_on(s.shutdown(Duration::from_secs(5)));
        r
    };
    assert!(
        code == plain_code && code != 0,
        "healthz over TLS {code}, plain {plain_code}"
    );
    // A certificate of another CA fails the handshake; plain HTTP gets no HTTP answer.
    assert_eq!(curl(&format!("{base}/metrics"), &foreign).0, 0);
    assert_eq!(
        curl(
            &format!("http://127.0.0.1:{}/metrics", server.addr().port()),
            &[]
        )
        .0,
        0
    );
    println!(
        "TLS: /metrics 200 with a client certificate, 403 without, /healthz {code} either way"
    );
    rt.block_on(server.shutdown(Duration::from_secs(5)));
}

#[test]
fn bad_tls_files_are_refused_with_the_key_named() {
    let ca = certs("badtls");
    let d = &ca.0;
    let cfg = |cert: &str, key: &str, client_ca: &str| HttpTlsConfig {
        cert_file: path(d, cert),
        key_file: path(d, key),
        client_ca_file: if client_ca.is_empty() {
            String::new()
        } else {
            path(d, client_ca)
        },
    };
    let no_client = serve::tls::server_config(&cfg("server.pem", "server.key", ""))
        .expect("valid")
        .expect("on");
    assert!(!no_client.client_auth);
    for (c, want) in [
        (cfg("server.key", "server.key", ""), "http.tls.cert_file"),
        (cfg("server.pem", "server.pem", ""), "http.tls.key_file"),
        (cfg("server.pem", "client.key", ""), "http.tls.key_file"),
        (
            cfg("server.pem", "server.key", "server.key"),
            "http.tls.client_ca_file",
        ),
    ] {
        let e = serve::tls::server_config(&c).expect_err("refused");
        assert_eq!(e.key, want, "{c:?}: {e}");
    }
    assert!(
        serve::tls::server_config(&HttpTlsConfig::default())
            .expect("off")
            .is_none()
    );
}
