//! Our programs in the kernel, driven with BPF_PROG_TEST_RUN: crafted frames in, the maps
//! read back. Each `Kernel` loads its own copy of the object (its own maps).
#![allow(dead_code, reason = "each test binary uses a different part")]

use aya::{
    Ebpf,
    maps::{HashMap, PerCpuArray},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use netprobe_ebpf::{Counter, FlowKey, FlowKey4, FlowStats};

use super::packets::{DST4, DST6, SRC4, SRC6};

/// XDP_PASS.
pub const XDP_PASS: u32 = 2;
/// TC_ACT_UNSPEC (TCX "next").
pub const TC_ACT_UNSPEC: u32 = u32::MAX;

/// A loaded copy of the production object.
pub struct Kernel {
    /// The object.
    pub ebpf: Ebpf,
    /// The coverage slots, with loopback's assigned.
    _slots: otel_netprobe::ebpf::coverage::SharedSlots,
}

impl Kernel {
    pub fn new() -> Self {
        Self::with_capacity(4096)
    }

    pub fn with_capacity(flows: u32) -> Self {
        super::require_root();
        let mut ebpf = otel_netprobe::ebpf::load(flows, flows).expect("load the eBPF object");
        // BPF_PROG_TEST_RUN runs the programs on loopback (index 1): it gets its coverage slot,
        // as the agent gives every attached interface one, so the global counters show only
        // what the packets themselves do.
        let slots = otel_netprobe::ebpf::coverage::Slots::take(&mut ebpf).expect("IFACES");
        assert!(slots.lock().expect("slots").assign(1), "loopback's slot");
        Self {
            ebpf,
            _slots: slots,
        }
    }

    pub fn xdp(&self, frame: &[u8]) {
        let prog: &Xdp = self
            .ebpf
            .program("netprobe_xdp")
            .unwrap()
            .try_into()
            .unwrap();
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        let r = prog.test_run(opts).expect("test run");
        assert_eq!(r.return_value, XDP_PASS, "XDP must always pass");
    }

    /// Runs a TC program with `__sk_buff` fields set: ingress_ifindex, gso_segs, gso_size.
    pub fn tc(&self, name: &str, frame: &[u8], ingress_ifindex: u32, gso_segs: u32, gso_size: u32) {
        self.tc_on(name, frame, 0, ingress_ifindex, gso_segs, gso_size);
    }

    /// As [`Self::tc`], as if on interface `ifindex` (0: the test run's default, loopback;
    /// another must exist in the caller's namespace).
    pub fn tc_on(
        &self,
        name: &str,
        frame: &[u8],
        ifindex: u32,
        ingress_ifindex: u32,
        gso_segs: u32,
        gso_size: u32,
    ) {
        let prog: &SchedClassifier = self.ebpf.program(name).unwrap().try_into().unwrap();
        let mut ctx = [0u8; 192];
        ctx[36..40].copy_from_slice(&ingress_ifindex.to_ne_bytes());
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        ctx[164..168].copy_from_slice(&gso_segs.to_ne_bytes());
        ctx[176..180].copy_from_slice(&gso_size.to_ne_bytes());
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.ctx_in = Some(&ctx);
        let r = prog.test_run(opts).expect("test run");
        assert_eq!(
            r.return_value, TC_ACT_UNSPEC,
            "TC must always pass on (TCX next)"
        );
    }

    /// Both flow tables, IPv4 keys widened to the general key.
    pub fn flows(&self) -> Vec<(FlowKey, FlowStats)> {
        let v4: HashMap<_, FlowKey4, FlowStats> =
            HashMap::try_from(self.ebpf.map("FLOWS4").unwrap()).unwrap();
        let v6: HashMap<_, FlowKey, FlowStats> =
            HashMap::try_from(self.ebpf.map("FLOWS6").unwrap()).unwrap();
        let mut all: Vec<_> = v4
            .iter()
            .map(Result::unwrap)
            .map(|(k, s)| (k.widen(), s))
            .collect();
        all.extend(v6.iter().map(Result::unwrap));
        all
    }

    /// Every entry of the hash (or LRU hash) map `name`.
    pub fn entries<K: aya::Pod, V: aya::Pod>(&self, name: &str) -> Vec<(K, V)> {
        let m: HashMap<_, K, V> = HashMap::try_from(self.ebpf.map(name).unwrap()).unwrap();
        m.iter().map(Result::unwrap).collect()
    }

    /// Overwrites the value of an IPv4 flow.
    pub fn set_flow(&mut self, key: &FlowKey, stats: &FlowStats) {
        let mut v4: HashMap<_, FlowKey4, FlowStats> =
            HashMap::try_from(self.ebpf.map_mut("FLOWS4").unwrap()).unwrap();
        v4.insert(FlowKey4::narrow(key), stats, 0).unwrap();
    }

    pub fn only_flow(&self) -> (FlowKey, FlowStats) {
        let f = self.flows();
        assert_eq!(f.len(), 1, "expected exactly one flow, got {f:?}");
        f[0]
    }

    pub fn counter(&self, c: Counter) -> u64 {
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("COUNTERS").unwrap()).unwrap();
        m.get(&(c as u32), 0).unwrap().iter().sum()
    }

    pub fn counters(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|c| (*c, self.counter(*c)))
            .filter(|(_, v)| *v != 0)
            .collect()
    }
}

pub fn v4(a: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(a), 0, 0, 0]
}

pub fn v6(a: [u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, c) in a.chunks(4).enumerate() {
        w[i] = u32::from_ne_bytes(c.try_into().unwrap());
    }
    w
}

pub fn key4(proto: u8, sport: u16, dport: u16) -> FlowKey {
    FlowKey {
        src_addr: v4(SRC4),
        dst_addr: v4(DST4),
        src_port: sport.to_be(),
        dst_port: dport.to_be(),
        protocol: proto,
        ip_version: 4,
        pad: [0; 2],
    }
}

pub fn key6(proto: u8, sport: u16, dport: u16) -> FlowKey {
    FlowKey {
        src_addr: v6(SRC6),
        dst_addr: v6(DST6),
        ip_version: 6,
        ..key4(proto, sport, dport)
    }
}
