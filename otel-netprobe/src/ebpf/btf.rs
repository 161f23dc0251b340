//! What the running kernel's BTF (`/sys/kernel/btf/vmlinux`) says, read at start: the offsets
//! of the `sk_buff` fields the drop program reads (Rust eBPF has no CO-RE relocations, so they
//! reach the program as load-time globals), and the names of the drop reasons (their numbers
//! differ between kernels, so no table is compiled in).
//!
//! A small reader of the BTF format (types and strings sections), enough for structs, unions
//! and enums; aya parses BTF too but keeps the type table to itself.

use std::{collections::HashMap, fmt};

/// The kernel's BTF file.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Reading BTF failed.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file could not be read (no BTF in this kernel).
    #[error("reading {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The data is not BTF this reader understands.
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    /// A type or member the agent needs is not there.
    #[error("BTF has no {0}")]
    Missing(String),
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

/// One type of the table: what the agent needs of it.
#[derive(Clone, Debug)]
enum Type {
    /// A struct or union: members as (name, type id, offset in bits).
    Composite {
        name: String,
        members: Vec<(String, u32, u32)>,
    },
    /// An enum: enumerators as (name, value).
    Enum {
        name: String,
        values: Vec<(String, u64)>,
    },
    /// Anything else.
    Other,
}

/// The parsed type table (type ids start at 1).
pub struct Btf {
    types: Vec<Type>,
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Btf({} types)", self.types.len())
    }
}

fn u32_at(d: &[u8], off: usize) -> Result<u32, BtfError> {
    d.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn running() -> Result<Self, BtfError> {
        let data = std::fs::read(VMLINUX).map_err(|source| BtfError::Read {
            path: VMLINUX.to_owned(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses raw BTF (little-endian, as on x86_64).
    pub fn parse(d: &[u8]) -> Result<Self, BtfError> {
        if d.len() < 24 || d[0..2] != [0x9f, 0xeb] {
            return Err(BtfError::Malformed("bad magic"));
        }
        let hdr_len = u32_at(d, 4)? as usize;
        let (type_off, type_len) = (u32_at(d, 8)? as usize, u32_at(d, 12)? as usize);
        let (str_off, str_len) = (u32_at(d, 16)? as usize, u32_at(d, 20)? as usize);
        let types = d
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = d
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?;
        let name = |off: u32| -> String {
            let s = strings.get(off as usize..).unwrap_or_default();
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at < types.len() {
            let (name_off, info) = (u32_at(types, at)?, u32_at(types, at + 4)?);
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let kind_flag = info >> 31 == 1;
            at += 12;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(types, m + 8)?;
                        // With kind_flag, the top 8 bits are a bitfield's size.
                        let bits = if kind_flag {
                            offset & 0xff_ffff
                        } else {
                            offset
                        };
                        members.push((name(u32_at(types, m)?), u32_at(types, m + 4)?, bits));
                    }
                    at += vlen * 12;
                    Type::Composite {
                        name: name(name_off),
                        members,
                    }
                }
                KIND_ENUM => {
                    let mut values = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = at + i * 8;
                        // Stored as 32 bits; signedness does not matter for the reasons.
                        values.push((name(u32_at(types, m)?), u64::from(u32_at(types, m + 4)?)));
                    }
                    at += vlen * 8;
                    Type::Enum {
                        name: name(name_off),
                        values,
                    }
                }
                KIND_ENUM64 => {
                    let mut values = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let v = u64::from(u32_at(types, m + 4)?)
                            | (u64::from(u32_at(types, m + 8)?) << 32);
                        values.push((name(u32_at(types, m)?), v));
                    }
                    at += vlen * 12;
                    Type::Enum {
                        name: name(name_off),
                        values,
                    }
                }
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    at += 4;
                    Type::Other
                }
                KIND_ARRAY => {
                    at += 12;
                    Type::Other
                }
                KIND_FUNC_PROTO => {
                    at += vlen * 8;
                    Type::Other
                }
                KIND_DATASEC => {
                    at += vlen * 12;
                    Type::Other
                }
                0..=19 => Type::Other,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            out.push(ty);
        }
        Ok(Self { types: out })
    }

    fn get(&self, id: u32) -> Option<&Type> {
        id.checked_sub(1).and_then(|i| self.types.get(i as usize))
    }

    /// The byte offset of `member` in struct `name`, looking through anonymous structs and
    /// unions (where recent kernels keep the `sk_buff` header offsets).
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let members = self
            .types
            .iter()
            .find_map(|t| match t {
                Type::Composite { name: n, members } if n == name => Some(members),
                _ => None,
            })
            .ok_or_else(|| BtfError::Missing(format!("struct {name}")))?;
        self.find_member(members, member, 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| BtfError::Missing(format!("{name}.{member}")))
    }

    fn find_member(&self, members: &[(String, u32, u32)], want: &str, base: u32) -> Option<u32> {
        for (name, ty, bits) in members {
            if name == want {
                return Some(base + bits);
            }
            if name.is_empty()
                && let Some(Type::Composite { members: inner, .. }) = self.get(*ty)
                && let Some(found) = self.find_member(inner, want, base + bits)
            {
                return Some(found);
            }
        }
        None
    }

    /// Every enumerator of the enums whose name is `name` or ends with `_{name}`.
    pub fn enumerators(&self, suffix: &str) -> Vec<(&str, &str, u64)> {
        self.types
            .iter()
            .filter_map(|t| match t {
                Type::Enum { name, values }
                    if name == suffix || name.ends_with(&format!("_{suffix}")) =>
                {
                    Some(
                        values
                            .iter()
                            .map(move |(v, n)| (name.as_str(), v.as_str(), *n)),
                    )
                }
                _ => None,
            })
            .flatten()
            .collect()
    }
}

/// Where the drop program finds what it reads in an `sk_buff`, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkbLayout {
    /// `head`: the buffer the header offsets count from.
    pub head: u32,
    /// `network_header` (u16, from `head`).
    pub network_header: u32,
    /// `transport_header` (u16, from `head`; all ones when unset).
    pub transport_header: u32,
    /// `protocol` (big-endian EtherType).
    pub protocol: u32,
}

impl SkbLayout {
    /// The offsets in this kernel's `struct sk_buff`.
    pub fn of(btf: &Btf) -> Result<Self, BtfError> {
        Ok(Self {
            head: btf.member_offset("sk_buff", "head")?,
            network_header: btf.member_offset("sk_buff", "network_header")?,
            transport_header: btf.member_offset("sk_buff", "transport_header")?,
            protocol: btf.member_offset("sk_buff", "protocol")?,
        })
    }
}

/// Drop reasons by number, as this kernel names them.
#[derive(Clone, Debug, Default)]
pub struct DropReasons {
    names: HashMap<u32, String>,
    /// Numbers that are not drops (`SKB_CONSUMED`, `SKB_NOT_DROPPED_YET`).
    not_drops: Vec<u32>,
}

impl DropReasons {
    /// From `enum skb_drop_reason` and, from 6.4, the subsystems' own enums (whose values
    /// carry the subsystem in their top 16 bits). Names lose their `SKB_DROP_REASON_`
    /// prefix; subsystem reasons keep theirs (`OVS_DROP_...`).
    pub fn of(btf: &Btf) -> Result<Self, BtfError> {
        let core = btf.enumerators("skb_drop_reason");
        if core.is_empty() {
            return Err(BtfError::Missing("enum skb_drop_reason".to_owned()));
        }
        let mut r = Self::default();
        for (enum_name, name, value) in btf.enumerators("drop_reason") {
            if name.ends_with("_MAX") || name.contains("SUBSYS") {
                continue;
            }
            let short = name.strip_prefix("SKB_DROP_REASON_").unwrap_or(name);
            if enum_name == "skb_drop_reason"
                && matches!(name, "SKB_CONSUMED" | "SKB_NOT_DROPPED_YET")
            {
                r.not_drops.push(value as u32);
            }
            r.names
                .entry(value as u32)
                .or_insert_with(|| short.to_owned());
        }
        Ok(r)
    }

    /// The name of reason `n` (`unknown` for a number this kernel does not name).
    pub fn name(&self, n: u32) -> &str {
        self.names.get(&n).map_or("unknown", String::as_str)
    }

    /// Whether this kernel has a reason of that name (without `SKB_DROP_REASON_`).
    pub fn has(&self, name: &str) -> bool {
        self.names.values().any(|n| n == name)
    }

    /// Whether `n` is a real drop (not a consumed or not-yet-dropped buffer).
    pub fn is_drop(&self, n: u32) -> bool {
        !self.not_drops.contains(&n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF: the host of these tests has it (6.18).
    fn running() -> Btf {
        Btf::running().expect("this machine's kernel has BTF")
    }

    #[test]
    fn skb_offsets_through_anonymous_members() {
        let l = SkbLayout::of(&running()).unwrap();
        // Facts of every kernel since long: head and the header offsets follow each other.
        assert!(l.head > 0 && l.protocol > 0);
        assert_eq!(l.transport_header + 2, l.network_header, "{l:?}");
    }

    #[test]
    fn drop_reasons_by_this_kernels_numbers() {
        let btf = running();
        let r = DropReasons::of(&btf).unwrap();
        let value = |n: &str| {
            let found = btf
                .enumerators("skb_drop_reason")
                .into_iter()
                .find(|(_, name, _)| *name == n);
            found.expect("a reason this kernel has").2 as u32
        };
        assert_eq!(r.name(value("SKB_DROP_REASON_NO_SOCKET")), "NO_SOCKET");
        assert_eq!(
            r.name(value("SKB_DROP_REASON_NETFILTER_DROP")),
            "NETFILTER_DROP"
        );
        assert_eq!(r.name(u32::MAX - 7), "unknown");
        assert!(!r.is_drop(value("SKB_CONSUMED")));
        assert!(!r.is_drop(value("SKB_NOT_DROPPED_YET")));
        assert!(r.is_drop(value("SKB_DROP_REASON_NO_SOCKET")));
    }

    #[test]
    fn malformed_btf_is_refused() {
        assert!(Btf::parse(b"not btf at all, not at all").is_err());
        let mut d = vec![0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
        d.extend_from_slice(&[0, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(Btf::parse(&d).is_err(), "a type section past the end");
    }
}
