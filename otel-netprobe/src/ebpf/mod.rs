//! The kernel stage: load the eBPF object, attach it to interfaces as they come and go, and
//! read its maps with batched syscalls.
//!
//! `attach` owns the programs (and so the links: dropping it detaches everything); `reader`
//! owns the maps and feeds [`crate::flow::FlowTable`]; `netlink` and `sys` are the thin
//! wrappers over the kernel interfaces that aya 0.14 does not cover.

pub mod attach;
pub mod netlink;
pub mod reader;
pub mod sys;

use aya::{Ebpf, EbpfLoader, maps::Map};
use netprobe_ebpf::{COUNTERS_MAP, FLOWS4_MAP, FLOWS6_MAP};

/// The production object: XDP, TC ingress and TC egress programs, the flow table and counters.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netprobe"));

/// The benchmark object: trivial XDP/TC programs and the per-CPU flow-table variant.
pub static BENCH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netprobe-bench"));

/// Loading or attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    /// The object could not be loaded (permissions, verifier, map creation).
    #[error("loading the eBPF object failed")]
    Load(#[source] aya::EbpfError),
    /// A program could not be loaded into the kernel or attached.
    #[error("loading or attaching program {name} failed")]
    Program {
        /// Program name.
        name: &'static str,
        /// The cause.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map or program the object must contain is missing.
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
}

/// Loads the production object with flow tables of `v4` and `v6` entries, and loads (but does
/// not attach) its three programs.
pub fn load(v4: u32, v6: u32) -> Result<Ebpf, EbpfError> {
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(FLOWS4_MAP, v4)
        .map_max_entries(FLOWS6_MAP, v6)
        .load(OBJECT)
        .map_err(EbpfError::Load)?;
    attach::load_programs(&mut ebpf)?;
    Ok(ebpf)
}

/// The maps the reader owns.
pub struct Maps {
    /// IPv4 flow table.
    pub flows4: aya::maps::MapData,
    /// IPv6 flow table.
    pub flows6: aya::maps::MapData,
    /// Per-CPU global counters.
    pub counters: aya::maps::PerCpuArray<aya::maps::MapData, u64>,
}

/// Takes the flow tables and the counter array out of the object, for the reader.
pub fn take_maps(ebpf: &mut Ebpf) -> Result<Maps, EbpfError> {
    let Some(Map::HashMap(flows4)) = ebpf.take_map(FLOWS4_MAP) else {
        return Err(EbpfError::Missing("IPv4 flow table"));
    };
    let Some(Map::HashMap(flows6)) = ebpf.take_map(FLOWS6_MAP) else {
        return Err(EbpfError::Missing("IPv6 flow table"));
    };
    let Some(counters) = ebpf
        .take_map(COUNTERS_MAP)
        .and_then(|m| aya::maps::PerCpuArray::try_from(m).ok())
    else {
        return Err(EbpfError::Missing("counter array"));
    };
    Ok(Maps {
        flows4,
        flows6,
        counters,
    })
}
