//! Network interface inventory and link-change events for the current network
//! namespace, over a raw `NETLINK_ROUTE` socket (`RTM_GETLINK` dumps and the
//! `RTMGRP_LINK` multicast group). Parsing is bounds-checked throughout:
//! malformed input yields [`NetlinkError::Malformed`], never a panic.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

// The kernel's constants, from libc (typed as the headers' fields they are compared with).
const NLMSG_HDRLEN: usize = size_of::<libc::nlmsghdr>();
const IFINFOMSG_LEN: usize = size_of::<libc::ifinfomsg>();
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
const NLM_F_DUMP_INTR: u16 = libc::NLM_F_DUMP_INTR as u16;
const NLM_F_DUMP: u16 = libc::NLM_F_DUMP as u16;
const NLA_TYPE_MASK: u16 = libc::NLA_TYPE_MASK as u16;
const RTMGRP_LINK: u32 = libc::RTMGRP_LINK as u32;
const IFF_UP: u32 = libc::IFF_UP as u32;
const IFF_LOOPBACK: u32 = libc::IFF_LOOPBACK as u32;
use libc::{
    IFLA_IFNAME, IFLA_INFO_KIND, IFLA_LINKINFO, IFLA_MASTER, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK,
};
const RECV_BUF: usize = 64 * 1024;

/// Errors from netlink sockets and message parsing.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A socket call failed.
    #[error("netlink {op} failed")]
    Io {
        /// The failing operation.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kernel answered a request with an `NLMSG_ERROR`.
    #[error("kernel rejected netlink request")]
    Kernel {
        /// The errno carried by the error message.
        #[source]
        source: io::Error,
    },
    /// The socket receive buffer overflowed (`ENOBUFS`): events were lost and
    /// the caller should re-dump with [`dump_links`].
    #[error("netlink receive buffer overrun, link events were lost")]
    Overrun,
    /// A message was truncated or inconsistent.
    #[error("malformed netlink message: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
}

/// One network interface as reported by `RTM_NEWLINK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index (`ifi_index`).
    pub index: u32,
    /// Interface name (`IFLA_IFNAME`).
    pub name: String,
    /// Driver kind from `IFLA_LINKINFO`/`IFLA_INFO_KIND`, e.g. `veth`, `bridge`.
    pub kind: Option<String>,
    /// Index of the master device (`IFLA_MASTER`), e.g. the bridge.
    pub master: Option<u32>,
    /// `IFF_LOOPBACK` is set.
    pub is_loopback: bool,
    /// `IFF_UP` is set.
    pub up: bool,
    /// `ifi_type` (`ARPHRD_*`): 1 ether, 772 loopback, 65534 none.
    pub arp_type: u16,
}

/// A link change seen by [`LinkMonitor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A link appeared or changed (`RTM_NEWLINK`).
    New(LinkInfo),
    /// A link was removed (`RTM_DELLINK`).
    Deleted {
        /// Index of the removed link.
        index: u32,
        /// Name of the removed link.
        name: String,
    },
}

fn io_err(op: &'static str, source: io::Error) -> NetlinkError {
    if source.raw_os_error() == Some(libc::ENOBUFS) {
        NetlinkError::Overrun
    } else {
        NetlinkError::Io { op, source }
    }
}

fn last_err(op: &'static str) -> NetlinkError {
    io_err(op, io::Error::last_os_error())
}

pub(super) fn malformed(reason: &'static str) -> NetlinkError {
    NetlinkError::Malformed { reason }
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

pub(super) fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Splits a buffer into netlink messages `(type, flags, seq, payload)`.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = Result<(u16, u16, u32, &[u8]), NetlinkError>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let len = u32_at(buf, 0).map_or(0, |l| l as usize);
        let (Some(ty), Some(flags), Some(seq)) = (u16_at(buf, 4), u16_at(buf, 6), u32_at(buf, 8))
        else {
            buf = &[];
            return Some(Err(malformed("short netlink header")));
        };
        if len < NLMSG_HDRLEN || len > buf.len() {
            buf = &[];
            return Some(Err(malformed("bad nlmsg_len")));
        }
        let payload = &buf[NLMSG_HDRLEN..len];
        buf = buf.get(align4(len)..).unwrap_or_default();
        Some(Ok((ty, flags, seq, payload)))
    })
}

/// Iterates `(type, payload)` of the route attributes in `buf`, stopping with
/// an error at a malformed one.
pub(super) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), NetlinkError>> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let (len, ty) = (u16_at(buf, 0)? as usize, u16_at(buf, 2)?);
        if len < 4 || len > buf.len() {
            buf = &[];
            return Some(Err(malformed("bad rta_len")));
        }
        let payload = &buf[4..len];
        buf = buf.get(align4(len)..).unwrap_or_default();
        Some(Ok((ty & NLA_TYPE_MASK, payload)))
    })
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Parses an `RTM_NEWLINK`/`RTM_DELLINK` payload. Returns `None` for
/// non-`AF_UNSPEC` families (e.g. `AF_BRIDGE` port notifications, which also
/// use `RTM_DELLINK` when a port leaves a bridge).
fn parse_link(payload: &[u8]) -> Result<Option<LinkInfo>, NetlinkError> {
    let hdr = payload
        .get(..IFINFOMSG_LEN)
        .ok_or(malformed("short ifinfomsg"))?;
    if hdr[0] != libc::AF_UNSPEC as u8 {
        return Ok(None);
    }
    let arp_type = u16_at(hdr, 2).unwrap_or_default();
    let index = u32_at(hdr, 4).unwrap_or_default();
    let flags = u32_at(hdr, 8).unwrap_or_default();
    let mut link = LinkInfo {
        index,
        name: String::new(),
        kind: None,
        master: None,
        is_loopback: flags & IFF_LOOPBACK != 0,
        up: flags & IFF_UP != 0,
        arp_type,
    };
    for attr in attrs(&payload[IFINFOMSG_LEN..]) {
        match attr? {
            (IFLA_IFNAME, v) => link.name = c_string(v),
            (IFLA_MASTER, v) => link.master = u32_at(v, 0).filter(|&m| m != 0),
            (IFLA_LINKINFO, v) => {
                for inner in attrs(v) {
                    if let (IFLA_INFO_KIND, k) = inner? {
                        link.kind = Some(c_string(k));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Some(link))
}

/// Parses one `RTMGRP_LINK` datagram (one or more netlink messages) into link
/// events, ignoring other message types and non-`AF_UNSPEC` families.
pub fn parse_link_events(datagram: &[u8]) -> Result<Vec<LinkEvent>, NetlinkError> {
    let mut events = Vec::new();
    for msg in messages(datagram) {
        let (ty, _, _, payload) = msg?;
        if !matches!(ty, RTM_NEWLINK | RTM_DELLINK) {
            continue;
        }
        events.extend(parse_link(payload)?.map(|link| match ty {
            RTM_NEWLINK => LinkEvent::New(link),
            _ => LinkEvent::Deleted {
                index: link.index,
                name: link.name,
            },
        }));
    }
    Ok(events)
}

/// An `AF_NETLINK`/`NETLINK_ROUTE` socket with its receive buffer.
#[derive(Debug)]
struct Socket {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Socket {
    fn open(groups: u32) -> Result<Self, NetlinkError> {
        let (domain, ty) = (libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC);
        // SAFETY: plain socket(2) call with constant arguments.
        let raw = unsafe { libc::socket(domain, ty, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(last_err("socket"));
        }
        // SAFETY: `raw` is a freshly created fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = groups;
        let len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_nl of `len` bytes.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) };
        if rc < 0 {
            return Err(last_err("bind"));
        }
        Ok(Self {
            fd,
            buf: vec![0; RECV_BUF],
        })
    }

    fn setsockopt<T>(&self, level: i32, name: i32, value: &T) -> io::Result<()> {
        let len = size_of::<T>() as libc::socklen_t;
        // SAFETY: `value` points to a live `T` of `len` bytes for the call.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                std::ptr::from_ref(value).cast(),
                len,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Sends a dump request of `ty` whose family header is `header` (all interfaces when
    /// zeroed).
    fn send_dump_request(&self, ty: u16, header: &[u8], seq: u32) -> Result<(), NetlinkError> {
        let len = NLMSG_HDRLEN + header.len();
        let mut req = vec![0u8; len];
        req[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&ty.to_ne_bytes());
        req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req[8..12].copy_from_slice(&seq.to_ne_bytes());
        req[NLMSG_HDRLEN..].copy_from_slice(header);
        // SAFETY: `req` is a valid buffer of `req.len()` bytes.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if n < 0 { Err(last_err("send")) } else { Ok(()) }
    }

    /// Receives one datagram from the kernel; `Ok(None)` on timeout or EINTR.
    fn recv(&mut self) -> Result<Option<&[u8]>, NetlinkError> {
        loop {
            // SAFETY: all-zero is a valid sockaddr_nl.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            let (buf, cap) = (self.buf.as_mut_ptr().cast(), self.buf.len());
            // SAFETY: `buf` is writable for `cap` bytes and `from`/`len`
            // describe a writable sockaddr_nl.
            let n = unsafe {
                let from = (&raw mut from).cast();
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf,
                    cap,
                    libc::MSG_TRUNC,
                    from,
                    &raw mut len,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                    return Ok(None);
                }
                return Err(io_err("recv", err));
            }
            if n as usize > cap {
                return Err(malformed("datagram larger than receive buffer"));
            }
            if from.nl_pid == 0 {
                return Ok(Some(&self.buf[..n as usize]));
            }
        }
    }
}

/// Lists every interface in the caller's network namespace with an
/// `RTM_GETLINK` dump. Retries (a few times) if the kernel flags the dump as
/// interrupted by concurrent changes (`NLM_F_DUMP_INTR`).
pub fn dump_links() -> Result<Vec<LinkInfo>, NetlinkError> {
    // ifinfomsg stays zeroed: family AF_UNSPEC, every interface.
    dump(RTM_GETLINK, &[0; IFINFOMSG_LEN], |ty, payload| match ty {
        RTM_NEWLINK => parse_link(payload),
        _ => Ok(None),
    })
}

/// Runs a dump request of `ty` with family header `header` in the caller's network namespace
/// and parses each answer with `parse(type, payload)`. Retries (a few times) if the kernel
/// flags the dump as interrupted by concurrent changes (`NLM_F_DUMP_INTR`).
pub(super) fn dump<T>(
    ty: u16,
    header: &[u8],
    parse: impl Fn(u16, &[u8]) -> Result<Option<T>, NetlinkError>,
) -> Result<Vec<T>, NetlinkError> {
    let mut sock = Socket::open(0)?;
    let mut found = Vec::new();
    for seq in 1..=5 {
        found.clear();
        sock.send_dump_request(ty, header, seq)?;
        let mut interrupted = false;
        'recv: loop {
            let Some(data) = sock.recv()? else {
                continue; // EINTR
            };
            for msg in messages(data) {
                let (ty, flags, msg_seq, payload) = msg?;
                if msg_seq != seq {
                    continue;
                }
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                match ty {
                    NLMSG_DONE => break 'recv,
                    NLMSG_ERROR => {
                        let errno = u32_at(payload, 0).ok_or(malformed("short nlmsgerr"))? as i32;
                        if errno != 0 {
                            return Err(NetlinkError::Kernel {
                                source: io::Error::from_raw_os_error(-errno),
                            });
                        }
                    }
                    ty => found.extend(parse(ty, payload)?),
                }
            }
        }
        if !interrupted {
            break;
        }
    }
    Ok(found)
}

/// A socket subscribed to `RTMGRP_LINK`, delivering link changes in the
/// namespace it was created in. Run [`LinkMonitor::recv`] on a dedicated thread.
#[derive(Debug)]
pub struct LinkMonitor {
    sock: Socket,
}

impl LinkMonitor {
    /// Default receive buffer size requested by [`LinkMonitor::new`].
    pub const DEFAULT_RCVBUF: usize = 4 << 20;

    /// Subscribes with a [`Self::DEFAULT_RCVBUF`] receive buffer.
    pub fn new() -> Result<Self, NetlinkError> {
        Self::with_rcvbuf(Self::DEFAULT_RCVBUF)
    }

    /// Subscribes with a `bytes` receive buffer, set with `SO_RCVBUFFORCE`
    /// (needs `CAP_NET_ADMIN`, ignores `rmem_max`) falling back to `SO_RCVBUF`.
    pub fn with_rcvbuf(bytes: usize) -> Result<Self, NetlinkError> {
        let sock = Socket::open(RTMGRP_LINK)?;
        let size = i32::try_from(bytes).unwrap_or(i32::MAX);
        sock.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size)
            .or_else(|_| sock.setsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF, &size))
            .map_err(|source| NetlinkError::Io {
                op: "setsockopt(SO_RCVBUF)",
                source,
            })?;
        Ok(Self { sock })
    }

    /// Sets how long [`Self::recv`] blocks; `None` blocks forever.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<(), NetlinkError> {
        // A zero timeval means "block forever", so round real timeouts up to 1 µs.
        let t = timeout.map_or(Duration::ZERO, |t| t.max(Duration::from_micros(1)));
        let tv = libc::timeval {
            tv_sec: t.as_secs().try_into().unwrap_or(libc::time_t::MAX),
            tv_usec: t.subsec_micros().into(),
        };
        self.sock
            .setsockopt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
            .map_err(|source| NetlinkError::Io {
                op: "setsockopt(SO_RCVTIMEO)",
                source,
            })
    }

    /// Waits for the next datagram and returns its link events (possibly
    /// none). Returns an empty `Vec` when the read timeout expires or a signal
    /// interrupts, and [`NetlinkError::Overrun`] when events were dropped.
    pub fn recv(&mut self) -> Result<Vec<LinkEvent>, NetlinkError> {
        match self.sock.recv()? {
            Some(data) => parse_link_events(data),
            None => Ok(Vec::new()),
        }
    }
}

impl AsFd for LinkMonitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.fd.as_fd()
    }
}
