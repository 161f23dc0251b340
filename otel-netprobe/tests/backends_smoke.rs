//! The real test backends start, take samples and answer PromQL: VictoriaMetrics via its
//! Prometheus text import, Prometheus by scraping a tiny exporter on 127.0.0.1.

mod common;

use std::{
    io::{Read, Write},
    net::TcpListener,
    time::Duration,
};

use common::backends::{Prometheus, VictoriaMetrics, single_value};

#[test]
fn victoria_metrics_imports_and_answers() {
    let vm = VictoriaMetrics::start();
    vm.import_prometheus("netprobe_smoke_total{a=\"b\"} 42\n");
    vm.flush();
    let r = vm.wait_query("netprobe_smoke_total", Duration::from_secs(10), |r| {
        single_value(r).is_some()
    });
    assert_eq!(single_value(&r), Some(42.0), "{r}");
    assert_eq!(r[0]["metric"]["a"], "b", "{r}");
    assert!(vm.otlp_metrics_url().ends_with("/opentelemetry/v1/metrics"));
}

#[test]
fn prometheus_scrapes_a_target() {
    let exporter = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = exporter.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut conn in exporter.incoming().flatten() {
            // Read the request head (small, one read usually suffices), then answer and close.
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = "netprobe_smoke_total 7\n";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let prom = Prometheus::start(&target, "1s");
    let r = prom.wait_query(
        "netprobe_smoke_total{job=\"netprobe\"}",
        Duration::from_secs(20),
        |r| single_value(r).is_some(),
    );
    assert_eq!(single_value(&r), Some(7.0), "{r}");
    assert_eq!(r[0]["metric"]["instance"], target.as_str(), "{r}");
}
