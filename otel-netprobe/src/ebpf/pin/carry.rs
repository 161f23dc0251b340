//! The carry store: what user space alone had accumulated for a flow — the counts of its kernel
//! entries that were moved out of the kernel table (idle) or replaced — kept in a pinned hash
//! map of our own ([`CARRY_MAP`], flow key → totals) so that it survives the agent, SIGKILL
//! included, and the next agent continues every flow's cumulative series from it.
//!
//! Written incrementally: a flow's entry changes only when one of its kernel entries leaves
//! the kernel, and is deleted when the flow is forgotten (series expiry); an agent that reads
//! 100k unchanged flows writes nothing. Created without preallocation, so it costs kernel
//! memory only for the flows it holds; when it is full a flow's carried counts are not
//! saved (the caller counts it), and that flow restarts from its kernel entry after a restart.

use std::{marker::PhantomData, os::fd::AsFd as _, path::Path};

use aya::{
    Pod,
    maps::{HashMap, MapData, MapError},
};
use aya_obj::generated::bpf_map_type;
use netprobe_ebpf::FlowKey;
use tracing::warn;

use super::layout::{Shape, difference, pinned};
use crate::ebpf::{
    sys::{BatchReader, SysError},
    table::aya_handle,
};

/// Name of the carry store's pin (created by user space, not part of the object).
pub const CARRY_MAP: &str = "NP_CARRY";

/// `BPF_F_NO_PREALLOC`: entries are allocated as they are inserted.
const NO_PREALLOC: u32 = 1;

/// The store's shape for values of `V` and `capacity` flows.
pub fn shape<V>(capacity: u32) -> Shape {
    Shape {
        name: CARRY_MAP.to_owned(),
        map_type: bpf_map_type::BPF_MAP_TYPE_HASH as u32,
        key_size: size_of::<FlowKey>() as u32,
        value_size: size_of::<V>() as u32,
        max_entries: capacity.max(1),
        map_flags: NO_PREALLOC,
    }
}

/// Whether a write was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    /// Written.
    Yes,
    /// The store is full: not written.
    Full,
}

/// The pinned store of carried totals `V` (a `#[repr(C)]` value of `u64`s), by flow.
pub struct CarryStore<V> {
    /// The map, for batched reads.
    data: MapData,
    /// A second handle on it, for the writes.
    map: HashMap<MapData, FlowKey, V>,
    _v: PhantomData<fn() -> V>,
}

impl<V: Pod> CarryStore<V> {
    /// Opens the store pinned at `dir` when `adopt` (the pinned state was adopted) and its
    /// shape fits; otherwise replaces it with an empty one (one log line when one was there).
    pub fn open(dir: &Path, capacity: u32, adopt: bool) -> Result<Self, SysError> {
        let path = dir.join(CARRY_MAP);
        let want = shape::<V>(capacity);
        let found = pinned(&path, CARRY_MAP);
        let keep = match &found {
            Some(f) if adopt => match difference(f, &want) {
                None => true,
                Some(reason) => {
                    warn!("the pinned carry store does not fit ({reason}): replacing it, empty");
                    false
                }
            },
            _ => false,
        };
        let aya = |e: MapError| SysError::Aya(Box::new(e));
        let data = if keep {
            MapData::from_pin(&path).map_err(aya)?
        } else {
            create(Some(&path), &want)?
        };
        let map = aya_handle(&data)?;
        Ok(Self {
            data,
            map,
            _v: PhantomData,
        })
    }

    /// A store pinned nowhere (it goes with this value): the reader's figures with a store,
    /// measured without a bpffs.
    pub fn unpinned(capacity: u32) -> Result<Self, SysError> {
        let data = create(None, &shape::<V>(capacity))?;
        let map = aya_handle(&data)?;
        Ok(Self {
            data,
            map,
            _v: PhantomData,
        })
    }

    /// Every carried entry.
    pub fn load(&self) -> Result<Vec<(FlowKey, V)>, SysError> {
        let mut batch = BatchReader::<FlowKey, V>::new(1024);
        let all = batch.read_all(self.data.fd().as_fd())?;
        Ok(all
            .keys
            .iter()
            .copied()
            .zip(all.values.iter().copied())
            .collect())
    }

    /// Writes `key`'s carried totals.
    pub fn save(&mut self, key: &FlowKey, value: &V) -> Result<Saved, SysError> {
        match self.map.insert(key, value, 0) {
            Ok(()) => Ok(Saved::Yes),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::E2BIG) => {
                Ok(Saved::Full)
            }
            Err(e) => Err(SysError::Aya(Box::new(e))),
        }
    }

    /// Deletes `key`'s entry (absent: nothing to do).
    pub fn forget(&mut self, key: &FlowKey) -> Result<(), SysError> {
        match self.map.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(())
            }
            Err(e) => Err(SysError::Aya(Box::new(e))),
        }
    }
}

/// Creates an empty store of `shape`, pinned at `path` if any (replacing any pin there).
fn create(path: Option<&Path>, shape: &Shape) -> Result<MapData, SysError> {
    let aya = |e: MapError| SysError::Aya(Box::new(e));
    let def = aya_obj::Map::new_from_params(
        shape.map_type,
        shape.key_size,
        shape.value_size,
        shape.max_entries,
        shape.map_flags,
    );
    let data = MapData::create(def, CARRY_MAP, None).map_err(aya)?;
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
        data.pin(path)
            .map_err(|e| aya(MapError::IoError(std::io::Error::other(e))))?;
    }
    Ok(data)
}
