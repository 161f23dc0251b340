//! The HTTP request path as the agent serves it: arbitrary bytes from a client, through the
//! server's protocol settings (`export::serve::protocol`: head size and count limits, the
//! header-read timeout) into the agent's router and its render cache. Parsing the request is
//! hyper's; what is ours is the settings, the routes and the handlers. No panic, and the
//! client gets nothing but well-formed HTTP/1.1 responses.
#![no_main]

use std::{sync::Arc, time::Duration};

use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use otel_netprobe::{
    export::{http, serve},
    telemetry::Telemetry,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower_service::Service as _;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

libfuzzer_sys::fuzz_target!(|request: &[u8]| {
    let app = http::router(
        http::shared_empty(),
        Arc::new(Telemetry::default()),
        Duration::from_secs(60),
    );
    let limits = serve::Limits {
        header_read_timeout: Duration::from_secs(5),
        ..serve::Limits::default()
    };
    let response = runtime().block_on(async {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let svc = service_fn(move |req: hyper::Request<Incoming>| {
            let mut app = app.clone();
            async move { app.call(req).await }
        });
        let conn = serve::protocol(&limits).serve_connection(TokioIo::new(server), svc);
        let served = tokio::spawn(async move {
            let _ = conn.await;
        });
        let (mut rx, mut tx) = tokio::io::split(client);
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            let _ = rx.read_to_end(&mut out).await;
            out
        });
        let _ = tx.write_all(request).await;
        let _ = tx.shutdown().await;
        // The connection ends at the client's end of stream (or its own error); the paused
        // clock is not used, so a head left unfinished ends with the stream, not a timeout.
        let _ = tokio::time::timeout(Duration::from_secs(10), served).await;
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    });
    // Every response starts with a status line of HTTP/1.1 (or HTTP/1.0 for a 1.0 client)
    // and a three-digit code.
    if !response.is_empty() {
        let line = response.split(|b| *b == b'\n').next().unwrap_or_default();
        let ok = (line.starts_with(b"HTTP/1.1 ") || line.starts_with(b"HTTP/1.0 "))
            && line.len() >= 12
            && line[9..12].iter().all(u8::is_ascii_digit);
        assert!(
            ok,
            "not an HTTP response: {:?}",
            String::from_utf8_lossy(line)
        );
    }
});
