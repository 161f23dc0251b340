//! `reader` and `export`: the user-space pipeline per cycle, in absolute figures with a
//! baseline of the same run beside each (the raw batched read of the same map; prost encoding
//! the same frame).

use std::{
    os::fd::AsFd,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use aya::maps::{HashMap, IterableMap, MapData, PerCpuArray};
use netprobe_ebpf::{COUNTER_SLOTS, FlowKey, FlowKey4, FlowStats, SIZE_BUCKETS};
use otel_netprobe::{
    config::MetricsConfig,
    ebpf::{self, reader::coarse_now_ns, sys::BatchReader},
    export::otlp::encode::Encoder,
    flow::{Budgets, FlowView, Reader, Reading, Timeouts},
    frame::Aggregator,
    metrics::{self, Family},
    telemetry::Telemetry,
};
use prost::Message as _;

use crate::median;

const FLOWS: u32 = 100_000;
const CAP: u32 = 131_072;

/// Writes `FLOWS` IPv4 flows whose counters depend on `round` into `map`.
fn fill_flows(map: &mut HashMap<MapData, FlowKey4, FlowStats>, round: u64) {
    for i in 0..FLOWS {
        let key = FlowKey4 {
            src_addr: i,
            dst_addr: 7,
            src_port: 1,
            dst_port: 2,
            protocol: 6,
            pad: [0; 3],
        };
        let mut v = FlowStats {
            bytes: 1500 * round,
            first_seen_ns: coarse_now_ns(),
            ..FlowStats::default()
        };
        v.size_buckets[5] = round;
        map.insert(key, v, 0).unwrap();
    }
}

/// A reader of these two tables (the fds are shared: each reader holds its own handles).
fn reader_of(
    v4: &HashMap<MapData, FlowKey4, FlowStats>,
    v6: &HashMap<MapData, FlowKey, FlowStats>,
    idle: Duration,
) -> Reader {
    let data = |m: &MapData| MapData::from_fd(m.fd().as_fd().try_clone_to_owned().unwrap());
    let maps = ebpf::Maps {
        flows4: data(v4.map()).unwrap(),
        flows6: data(v6.map()).unwrap(),
        counters: PerCpuArray::create(COUNTER_SLOTS, 0).unwrap(),
    };
    let timeouts = Timeouts {
        kernel_idle: idle,
        idle,
    };
    Reader::new(maps, u64::from(CAP) * 2, timeouts, Arc::default()).unwrap()
}

fn per_flow(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6 / f64::from(FLOWS)
}

/// The read cycle (batched read, cumulative table, decoded flows) and the aggregation of its
/// result, per flow, at 100k flows.
pub fn reader_cost() {
    // As the agent runs (src/main.rs): each cycle's large blocks are mapped and unmapped.
    otel_netprobe::heap::return_large_blocks();
    let mut v4 = HashMap::<MapData, FlowKey4, FlowStats>::create(CAP, 0).unwrap();
    let v6 = HashMap::<MapData, FlowKey, FlowStats>::create(CAP, 0).unwrap();
    let hour = Duration::from_secs(3600);
    // Steady state: the same 100k flows, none with new packets since the last read.
    fill_flows(&mut v4, 1);
    let mut r = reader_of(&v4, &v6, hour);
    let mut raw = BatchReader::<FlowKey4, FlowStats>::new(1024);
    let (mut quiet, mut baseline, mut aggregate, mut trim) = (vec![], vec![], vec![], vec![]);
    let mut aggregator = Aggregator::standalone(Budgets::default());
    for _ in 0..6 {
        let t = Instant::now();
        let reading = r.cycle();
        quiet.push(per_flow(t));
        assert_eq!(reading.flows.len(), FLOWS as usize);
        let t = Instant::now();
        let snap = aggregator.publish(&reading);
        aggregate.push(per_flow(t));
        assert_eq!(snap.summary.flows, u64::from(FLOWS));
        // What the agent's read loop does after each cycle, once the cycle's results are freed.
        drop((reading, snap));
        let t = Instant::now();
        otel_netprobe::heap::trim();
        trim.push(per_flow(t));
        let t = Instant::now();
        assert_eq!(
            raw.read_all(v4.map().fd().as_fd()).unwrap().keys.len(),
            FLOWS as usize
        );
        baseline.push(per_flow(t));
    }
    quiet.remove(0); // the first cycle creates every record
    // Worst case: every flow had packets since the last read.
    let mut busy = vec![];
    for round in 2..7 {
        fill_flows(&mut v4, round);
        let t = Instant::now();
        r.cycle();
        busy.push(per_flow(t));
    }
    // Read and expire: 100k known flows all went idle; each leaves the kernel with its final
    // value (one lookup-and-delete each) and is forgotten.
    let mut expire = vec![];
    for round in 0..3 {
        fill_flows(&mut v4, 10 + round);
        let mut r = reader_of(&v4, &v6, hour);
        r.cycle();
        r.set_timeouts(Timeouts {
            kernel_idle: Duration::from_nanos(1),
            idle: Duration::from_nanos(1),
        });
        let t = Instant::now();
        let reading = r.cycle();
        expire.push(per_flow(t));
        assert_eq!(reading.health.kernel_evictions_total, u64::from(FLOWS));
        assert!(reading.flows.is_empty());
    }
    let base = median(baseline);
    println!(
        "\n== Reader, {FLOWS} flows; absolute µs/flow, and × the raw batched read of the same map ({base:.3} µs/flow) =="
    );
    for (what, v) in [
        ("read cycle, no flow changed:   ", median(quiet)),
        ("read cycle, every flow changed:", median(busy)),
        ("read + expire every flow:      ", median(expire)),
        (
            "aggregate (name, budget, frame, summary; 2000 series):",
            median(aggregate),
        ),
        ("heap trimmed after the cycle:  ", median(trim)),
    ] {
        println!("{what} {v:.3} µs/flow ({:.1}x)", v / base);
    }
}

fn flows(n: u32) -> Vec<FlowView> {
    (0..n)
        .map(|i| {
            let key = FlowKey {
                src_addr: [i.to_be(), 0, 0, 0],
                dst_addr: [7, 0, 0, 0],
                src_port: 40000u16.to_be(),
                dst_port: 443u16.to_be(),
                protocol: 6,
                ip_version: 4,
                pad: [0; 2],
            };
            let mut b = [0; SIZE_BUCKETS];
            b[5] = u64::from(i);
            FlowView::new(&key, u64::from(i) * 1500, b, 0, (0, 0))
        })
        .collect()
}

/// One export cycle at 1k/10k/100k series: the frame built (naming, budget, families,
/// summary) and the request encoded by the direct writer; prost encoding the same frame is
/// the baseline.
pub fn export_cost() {
    otel_netprobe::heap::return_large_blocks();
    println!(
        "\n== OTLP export cycle: frame built + request encoded, absolute µs/series (median of 5); \
         × prost encoding the same frame =="
    );
    let health = metrics::agent::families(&Telemetry::default());
    for n in [1_000u32, 10_000, 100_000] {
        let reading = Reading {
            flows: flows(n),
            ..Reading::default()
        };
        let budgets = Budgets::from_config(
            &MetricsConfig {
                max_series: n as usize + 1,
                ..MetricsConfig::default()
            },
            false,
        );
        let mut aggregator = Aggregator::standalone(budgets);
        let encoder = Encoder::new(
            &[("service.name".into(), "otel-netprobe".into())],
            SystemTime::now(),
        );
        let (mut frame, mut encode, mut prost, mut size) = (vec![], vec![], vec![], 0);
        for _ in 0..5 {
            let t = Instant::now();
            let snap = aggregator.publish(&reading);
            frame.push(t.elapsed().as_secs_f64());
            let families: Vec<&Family> = snap.frame.families.iter().chain(&health).collect();
            let t = Instant::now();
            let body = encoder.encode(&families, snap.taken_at);
            encode.push(t.elapsed().as_secs_f64());
            size = body.len();
            let t = Instant::now();
            let reference = encoder.request(&families, snap.taken_at).encode_to_vec();
            prost.push(t.elapsed().as_secs_f64());
            std::hint::black_box(reference);
        }
        let us = |v: Vec<f64>| median(v) * 1e6 / f64::from(n);
        let (frame, encode, prost) = (us(frame), us(encode), us(prost));
        println!(
            "{n:>7} series: {:.2} µs/series (frame {frame:.2} + encode {encode:.2}; prost \
             encode {prost:.2}: the direct writer takes {:.2}x its time), {:.1} MiB request",
            frame + encode,
            encode / prost,
            size as f64 / f64::from(1 << 20)
        );
    }
}
