//! The kernel's own receive counters of every interface, read with one `RTM_GETSTATS` dump
//! (`IFLA_STATS_LINK_64`, 4.7 on) over [`super::netlink`]'s socket: what the coverage of our
//! ingress programs is measured against.

use std::collections::HashMap;

use super::netlink::{NetlinkError, attrs, dump, malformed, u32_at};

const RTM_NEWSTATS: u16 = 92;
const RTM_GETSTATS: u16 = 94;
/// `struct if_stats_msg`: family, two pad fields, ifindex, filter mask.
const IF_STATS_MSG_LEN: usize = 12;
const IFLA_STATS_LINK_64: u16 = 1;

/// An interface's receive counters (`struct rtnl_link_stats64`'s `rx_packets`, `rx_bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxCounters {
    /// Packets received (as the driver counts them: frames, or buffers on a veth).
    pub packets: u64,
    /// Bytes received (link-layer header included on Ethernet devices, no FCS).
    pub bytes: u64,
}

/// The receive counters of every interface of the caller's network namespace, by index.
pub fn read() -> Result<HashMap<u32, RxCounters>, NetlinkError> {
    let mut header = [0u8; IF_STATS_MSG_LEN];
    // AF_UNSPEC, every interface, only the 64-bit link statistics.
    header[8..12].copy_from_slice(&(1u32 << (IFLA_STATS_LINK_64 - 1)).to_ne_bytes());
    let found = dump(RTM_GETSTATS, &header, |ty, payload| match ty {
        RTM_NEWSTATS => parse(payload),
        _ => Ok(None),
    })?;
    Ok(found.into_iter().collect())
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Parses one `RTM_NEWSTATS` payload into (index, receive counters).
fn parse(payload: &[u8]) -> Result<Option<(u32, RxCounters)>, NetlinkError> {
    let index = u32_at(payload, 4).ok_or(malformed("short if_stats_msg"))?;
    let rest = payload.get(IF_STATS_MSG_LEN..).unwrap_or_default();
    for attr in attrs(rest) {
        if let (IFLA_STATS_LINK_64, v) = attr? {
            // rx_packets, tx_packets, rx_bytes: the first three u64 fields.
            let (Some(packets), Some(bytes)) = (u64_at(v, 0), u64_at(v, 16)) else {
                return Err(malformed("short rtnl_link_stats64"));
            };
            return Ok(Some((index, RxCounters { packets, bytes })));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_receive_pair_and_rejects_a_short_one() {
        let mut stats = vec![0u8; 24 * 8];
        stats[0..8].copy_from_slice(&7u64.to_ne_bytes());
        stats[16..24].copy_from_slice(&700u64.to_ne_bytes());
        let mut msg = vec![0u8; IF_STATS_MSG_LEN];
        msg[4..8].copy_from_slice(&3u32.to_ne_bytes());
        msg.extend_from_slice(&((4 + stats.len()) as u16).to_ne_bytes());
        msg.extend_from_slice(&IFLA_STATS_LINK_64.to_ne_bytes());
        msg.extend_from_slice(&stats);
        let want = RxCounters {
            packets: 7,
            bytes: 700,
        };
        assert_eq!(parse(&msg).unwrap(), Some((3, want)));
        msg.truncate(IF_STATS_MSG_LEN + 4 + 16);
        msg[IF_STATS_MSG_LEN..IF_STATS_MSG_LEN + 2].copy_from_slice(&20u16.to_ne_bytes());
        assert!(parse(&msg).is_err());
    }
}
