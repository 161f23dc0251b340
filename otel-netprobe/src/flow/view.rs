//! Flows decoded for people and exporters: a flow's key and cumulative counts as addresses,
//! ports, transport and the counts of its extras.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netprobe_ebpf::{FlowKey, SIZE_BUCKETS, parse::proto, tcp_flags};

use super::{FlowTable, KernelCounts};

/// Transport protocol of a flow, as named in `network.transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (IPv4).
    Icmp,
    /// ICMPv6.
    Icmpv6,
    /// Any other IP protocol, by number.
    Other(u8),
}

impl Transport {
    /// From an IP protocol number.
    pub fn from_protocol(p: u8) -> Self {
        match p {
            proto::TCP => Self::Tcp,
            proto::UDP => Self::Udp,
            proto::ICMP => Self::Icmp,
            proto::ICMPV6 => Self::Icmpv6,
            other => Self::Other(other),
        }
    }

    /// The `network.transport` value (`ipproto_<n>` for unnamed protocols).
    pub fn name(self) -> String {
        match self {
            Self::Tcp => "tcp".into(),
            Self::Udp => "udp".into(),
            Self::Icmp => "icmp".into(),
            Self::Icmpv6 => "icmpv6".into(),
            Self::Other(n) => format!("ipproto_{n}"),
        }
    }

    fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp) || matches!(self, Self::Other(132 | 136))
    }
}

/// One flow with its cumulative counts, decoded for people and exporters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowView {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 where the transport has none).
    pub src_port: u16,
    /// Destination port (0 where the transport has none).
    pub dst_port: u16,
    /// Transport protocol.
    pub transport: Transport,
    /// Wire packets.
    pub packets: u64,
    /// IP bytes.
    pub bytes: u64,
    /// Packets per size bucket ([`netprobe_ebpf::SIZE_BUCKET_BOUNDS`]).
    pub size_buckets: [u64; SIZE_BUCKETS],
    /// Union of TCP flags seen.
    pub tcp_flags: u64,
    /// Kernel coarse-clock time of the first packet (ns).
    pub first_seen_ns: u64,
    /// Kernel coarse-clock time of the last packet (ns).
    pub last_seen_ns: u64,
    /// Its connections and its counts from the kernel's per-flow counter maps (drops, ICMP
    /// errors), when it has any.
    pub extras: Option<std::sync::Arc<super::FlowExtras>>,
}

impl FlowView {
    /// Decodes a kernel key and its totals.
    pub fn new(
        key: &FlowKey,
        bytes: u64,
        size_buckets: [u64; SIZE_BUCKETS],
        flags: u64,
        seen: (u64, u64),
    ) -> Self {
        let (src, dst) = if key.ip_version == 4 {
            (
                IpAddr::V4(Ipv4Addr::from(key.src_addr[0].to_ne_bytes())),
                IpAddr::V4(Ipv4Addr::from(key.dst_addr[0].to_ne_bytes())),
            )
        } else {
            (IpAddr::V6(v6(key.src_addr)), IpAddr::V6(v6(key.dst_addr)))
        };
        Self {
            src,
            dst,
            src_port: u16::from_be(key.src_port),
            dst_port: u16::from_be(key.dst_port),
            transport: Transport::from_protocol(key.protocol),
            packets: size_buckets.iter().sum(),
            bytes,
            size_buckets,
            tcp_flags: flags,
            first_seen_ns: seen.0,
            last_seen_ns: seen.1,
            extras: None,
        }
    }

    /// The server's port and whether the destination is the server, or `None` when the
    /// transport has no ports. The direction comes from the handshake when it was seen (SYN
    /// towards the server, SYN-ACK from it); otherwise the lower port is taken as the server's,
    /// so an ephemeral client port never becomes an attribute.
    pub fn server_port(&self) -> Option<(u16, bool)> {
        self.server_port_by(|_, _| false)
    }

    /// As [`Self::server_port`], with a second opinion between the handshake and the
    /// heuristic: `serves(ip, port)` says an end is certainly a server on a port (a service's
    /// ClusterIP or endpoint).
    pub fn server_port_by(&self, serves: impl Fn(IpAddr, u16) -> bool) -> Option<(u16, bool)> {
        if !self.transport.has_ports() || (self.src_port == 0 && self.dst_port == 0) {
            return None;
        }
        if self.transport == Transport::Tcp {
            if self.tcp_flags & tcp_flags::SYN_ACK != 0 {
                return Some((self.src_port, false));
            }
            if self.tcp_flags & tcp_flags::SYN != 0 {
                return Some((self.dst_port, true));
            }
        }
        if serves(self.dst, self.dst_port) {
            return Some((self.dst_port, true));
        }
        if serves(self.src, self.src_port) {
            return Some((self.src_port, false));
        }
        if self.dst_port <= self.src_port {
            Some((self.dst_port, true))
        } else {
            Some((self.src_port, false))
        }
    }

    /// The flow's counts from the kernel map `map` (see [`crate::ebpf::counts`]), one per
    /// attribute values.
    pub fn counts<'a>(&'a self, map: &'a str) -> impl Iterator<Item = &'a KernelCounts> + 'a {
        self.extras
            .iter()
            .flat_map(|e| &e.counts)
            .filter(move |c| c.map == map)
    }

    /// `network.type`: `ipv4` or `ipv6`.
    pub fn network_type(&self) -> &'static str {
        if self.src.is_ipv4() { "ipv4" } else { "ipv6" }
    }
}

fn v6(words: [u32; 4]) -> Ipv6Addr {
    let mut b = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    Ipv6Addr::from(b)
}

/// Every flow of `table`, decoded.
pub fn flows_of(table: &FlowTable) -> Vec<FlowView> {
    table
        .records
        .iter()
        .map(|(k, r)| {
            let t = r.totals();
            let mut view = FlowView::new(
                k,
                t.bytes,
                t.buckets,
                t.tcp_flags(),
                (r.first_seen_ns, r.last_seen_ns),
            );
            view.extras.clone_from(&r.extras);
            view
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(sport: u16, dport: u16, flags: u64) -> FlowView {
        let key = FlowKey {
            src_addr: [u32::from_ne_bytes([10, 0, 0, 1]), 0, 0, 0],
            dst_addr: [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0],
            src_port: sport.to_be(),
            dst_port: dport.to_be(),
            protocol: 6,
            ip_version: 4,
            pad: [0; 2],
        };
        FlowView::new(&key, 0, [0; SIZE_BUCKETS], flags, (0, 0))
    }

    #[test]
    fn decodes_addresses_and_ports() {
        let v = view(40000, 8080, 0);
        assert_eq!(v.src.to_string(), "10.0.0.1");
        assert_eq!(v.dst.to_string(), "10.0.0.2");
        assert_eq!((v.src_port, v.dst_port), (40000, 8080));
    }

    #[test]
    fn server_port_from_handshake_then_heuristic() {
        // Client → server with SYN seen, even with a low client port.
        assert_eq!(
            view(80, 40000, tcp_flags::SYN).server_port(),
            Some((40000, true))
        );
        // Server → client: SYN-ACK seen.
        assert_eq!(
            view(
                8080,
                40000,
                tcp_flags::SYN | tcp_flags::ACK | tcp_flags::SYN_ACK
            )
            .server_port(),
            Some((8080, false))
        );
        // No handshake seen: the lower port.
        assert_eq!(
            view(40000, 8080, tcp_flags::ACK).server_port(),
            Some((8080, true))
        );
        assert_eq!(
            view(8080, 40000, tcp_flags::ACK).server_port(),
            Some((8080, false))
        );
    }
}
