//! An OTLP/HTTP collector stand-in between the agent and VictoriaMetrics, in a lab namespace:
//! it records what arrives on the wire (path, headers, gzip, data points) and forwards each
//! request, decompressed, to VictoriaMetrics — or stalls one request, or is down (its port
//! refuses connections) until told to come back.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest, metrics::v1::metric::Data,
};
use prost::Message;

use super::{Netns, backends::http_post};

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Request path.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// Whether the body was gzip (by its magic bytes).
    pub gzip: bool,
    /// Data points in the request.
    pub points: u64,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    /// Requests to hold this long before answering (one per entry).
    stalls: Mutex<Vec<Duration>>,
    generation: AtomicU64,
}

/// The proxy; stops with the test process (its threads only accept and forward).
pub struct Proxy {
    /// Where it listens (inside the lab namespace).
    pub addr: SocketAddr,
    state: Arc<State>,
    /// The namespace's name.
    ns: String,
    vm_url: String,
}

fn points(req: &ExportMetricsServiceRequest) -> u64 {
    let per = |d: Option<&Data>| match d {
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        _ => 0,
    };
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| per(m.data.as_ref()) as u64)
        .sum()
}

impl Proxy {
    /// Listens in `ns` (the namespace's name) and forwards to VictoriaMetrics at `vm_url`
    /// (reachable from that namespace).
    pub fn start(ns: &Netns, vm_url: &str) -> Self {
        let listener = ns
            .run(|| TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let p = Self {
            addr: listener.local_addr().expect("addr"),
            state: Arc::default(),
            ns: ns.name.clone(),
            vm_url: vm_url.to_owned(),
        };
        p.serve(listener);
        p
    }

    fn serve(&self, listener: TcpListener) {
        let (state, vm) = (Arc::clone(&self.state), self.vm_url.clone());
        let generation = state.generation.load(Ordering::Relaxed);
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            super::enter(&path);
            for conn in listener.incoming() {
                if state.generation.load(Ordering::Relaxed) != generation {
                    return; // down: the listener closes with this thread
                }
                let Ok(conn) = conn else { continue };
                let (state, vm) = (Arc::clone(&state), vm.clone());
                std::thread::spawn(move || handle(conn, &state, &vm));
            }
        });
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// Holds the next request for `d` before handling it.
    pub fn stall_next(&self, d: Duration) {
        self.state.stalls.lock().expect("lock").push(d);
    }

    /// Stops listening: connections are refused until [`Self::up`].
    pub fn down(&self) {
        self.state.generation.fetch_add(1, Ordering::Relaxed);
        // Wake the accept loop so it sees the new generation and drops the listener.
        let _ = self.connect();
        let refused = super::wait_until(Duration::from_secs(10), || self.connect().is_err());
        assert!(refused, "the proxy's port still accepts");
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let addr = self.addr;
        super::within(Some(&self.ns), move || TcpStream::connect(addr))
    }

    /// Listens again on the same port.
    pub fn up(&self) {
        let addr = self.addr;
        let listener = super::within(Some(&self.ns), move || TcpListener::bind(addr))
            .expect("re-bind the proxy's port");
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Stop accepting (the namespace is the lab's, deleted with it).
        self.state.generation.fetch_add(1, Ordering::Relaxed);
        let _ = self.connect();
    }
}

fn handle(mut conn: TcpStream, state: &State, vm: &str) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) <= 2 {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let stall = state.stalls.lock().expect("lock").pop();
    if let Some(d) = stall {
        std::thread::sleep(d);
    }
    let gzip = body.starts_with(&[0x1f, 0x8b]);
    let raw = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("gunzip");
        out
    } else {
        body
    };
    let req = ExportMetricsServiceRequest::decode(&raw[..]).expect("an OTLP request");
    state.seen.lock().expect("lock").push(Seen {
        path,
        headers,
        gzip,
        points: points(&req),
    });
    let url = format!("{vm}/opentelemetry/v1/metrics");
    let status = match http_post(&url, "application/x-protobuf", &raw) {
        Ok((s, _)) if (200..300).contains(&s) => "200 OK",
        _ => "502 Bad Gateway",
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}
