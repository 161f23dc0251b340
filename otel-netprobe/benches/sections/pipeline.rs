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
    ebpf::{self, pin::carry::CarryStore, reader::coarse_now_ns, sys::BatchReader},
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

/// A reader of these two tables (the fds are shared: each reader holds its own handles),
/// with a carry store (unpinned, as the agent sizes it: twice the tables) when `carry`.
fn reader_of(
    v4: &HashMap<MapData, FlowKey4, FlowStats>,
    v6: &HashMap<MapData, FlowKey, FlowStats>,
    idle: Duration,
    carry: bool,
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
    let r = Reader::new(maps, u64::from(CAP) * 2, timeouts, Arc::default()).unwrap();
    if carry {
        r.with_carry(CarryStore::unpinned(CAP * 4).unwrap())
            .unwrap()
    } else {
        r
    }
}

fn per_flow(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e6 / f64::from(FLOWS)
}

/// The reader's per-flow figures at 100k flows, without and with the carry store.
#[derive(Default)]
struct ReaderFigures {
    quiet: Vec<f64>,
    busy: Vec<f64>,
    expire: Vec<f64>,
    move_out: Vec<f64>,
    forget: Vec<f64>,
}

/// The read cycles of [`reader_cost`], with a carry store when `carry`.
fn reader_cycles(
    v4: &mut HashMap<MapData, FlowKey4, FlowStats>,
    v6: &HashMap<MapData, FlowKey, FlowStats>,
    carry: bool,
) -> ReaderFigures {
    let hour = Duration::from_secs(3600);
    let mut f = ReaderFigures::default();
    // Steady state: the same 100k flows, none with new packets since the last read.
    fill_flows(v4, 1);
    let mut r = reader_of(v4, v6, hour, carry);
    for _ in 0..6 {
        let t = Instant::now();
        let reading = r.cycle();
        f.quiet.push(per_flow(t));
        assert_eq!(reading.flows.len(), FLOWS as usize);
        drop(reading);
        otel_netprobe::heap::trim();
    }
    f.quiet.remove(0); // the first cycle creates every record
    // Worst case: every flow had packets since the last read.
    for round in 2..7 {
        fill_flows(v4, round);
        let t = Instant::now();
        r.cycle();
        f.busy.push(per_flow(t));
    }
    drop(r);
    // Read and expire: 100k known flows all went idle; each leaves the kernel with its final
    // value (one lookup-and-delete each) and is forgotten.
    for round in 0..3 {
        fill_flows(v4, 10 + round);
        let mut r = reader_of(v4, v6, hour, carry);
        r.cycle();
        r.set_timeouts(Timeouts {
            kernel_idle: Duration::from_nanos(1),
            idle: Duration::from_nanos(1),
        });
        let t = Instant::now();
        let reading = r.cycle();
        f.expire.push(per_flow(t));
        assert_eq!(reading.health.kernel_evictions_total, u64::from(FLOWS));
        assert!(reading.flows.is_empty());
    }
    // Move out, kept: 100k flows leave the kernel but stay tracked (each one's carried counts
    // written); then forget them (each one's carried counts deleted).
    for round in 0..3 {
        fill_flows(v4, 20 + round);
        let mut r = reader_of(v4, v6, hour, carry);
        r.cycle();
        r.set_timeouts(Timeouts {
            kernel_idle: Duration::from_nanos(1),
            idle: hour,
        });
        let t = Instant::now();
        let reading = r.cycle();
        f.move_out.push(per_flow(t));
        assert_eq!(reading.health.kernel_evictions_total, u64::from(FLOWS));
        assert_eq!(reading.flows.len(), FLOWS as usize);
        drop(reading);
        r.set_timeouts(Timeouts {
            kernel_idle: Duration::from_nanos(1),
            idle: Duration::from_nanos(1),
        });
        let t = Instant::now();
        let reading = r.cycle();
        f.forget.push(per_flow(t));
        assert!(reading.flows.is_empty());
    }
    f
}

/// The read cycle (batched read, cumulative table, decoded flows) and the aggregation of its
/// result, per flow, at 100k flows; each read cycle without and with the carry store (the
/// agent's, when pinned), in alternation on the same machine.
pub fn reader_cost() {
    // As the agent runs (src/main.rs): each cycle's large blocks are mapped and unmapped.
    otel_netprobe::heap::return_large_blocks();
    let mut v4 = HashMap::<MapData, FlowKey4, FlowStats>::create(CAP, 0).unwrap();
    let v6 = HashMap::<MapData, FlowKey, FlowStats>::create(CAP, 0).unwrap();
    let hour = Duration::from_secs(3600);
    fill_flows(&mut v4, 1);
    let mut r = reader_of(&v4, &v6, hour, false);
    let mut raw = BatchReader::<FlowKey4, FlowStats>::new(1024);
    let (mut baseline, mut aggregate, mut trim) = (vec![], vec![], vec![]);
    let mut aggregator = Aggregator::standalone(Budgets::default());
    for _ in 0..6 {
        let reading = r.cycle();
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
    drop(r);
    let (mut without, mut with) = (ReaderFigures::default(), ReaderFigures::default());
    for _ in 0..2 {
        for (carry, into) in [(false, &mut without), (true, &mut with)] {
            let f = reader_cycles(&mut v4, &v6, carry);
            into.quiet.extend(f.quiet);
            into.busy.extend(f.busy);
            into.expire.extend(f.expire);
            into.move_out.extend(f.move_out);
            into.forget.extend(f.forget);
        }
    }
    let base = median(baseline);
    println!(
        "\n== Reader, {FLOWS} flows; absolute µs/flow, and × the raw batched read of the same map ({base:.3} µs/flow) =="
    );
    let rows = |f: ReaderFigures| {
        [
            ("read cycle, no flow changed:   ", median(f.quiet)),
            ("read cycle, every flow changed:", median(f.busy)),
            ("read + expire every flow:      ", median(f.expire)),
            ("move every flow out, kept:     ", median(f.move_out)),
            ("forget every moved-out flow:   ", median(f.forget)),
        ]
    };
    for ((what, v), (_, c)) in rows(without).into_iter().zip(rows(with)) {
        println!(
            "{what} {v:.3} µs/flow ({:.1}x); with the carry store {c:.3} ({:+.1} %)",
            v / base,
            (c / v - 1.0) * 100.0
        );
    }
    for (what, v) in [
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
