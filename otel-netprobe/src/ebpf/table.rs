//! One kernel hash map as the reader uses it: every entry in batches
//! ([`BatchReader`]), and the per-key operations — a delete, or a move out of the kernel with
//! the entry's final value ([`Eviction`]) — through aya's handle on the same map or our own
//! syscalls.

use std::os::fd::{AsFd, BorrowedFd};

use aya::{
    Pod,
    maps::{HashMap, Map, MapData, MapError},
};

use super::{
    reader::Eviction,
    sys::{BatchReader, Entries, SysError, TypedMap},
};

/// A second handle on the map behind `data`, through aya's typed hash map.
pub(crate) fn aya_handle<K: Pod, V: Pod>(
    data: &MapData,
) -> Result<HashMap<MapData, K, V>, SysError> {
    let aya = |e: MapError| SysError::Aya(Box::new(e));
    let fd = data.fd().as_fd().try_clone_to_owned();
    let fd = fd.map_err(|e| aya(MapError::IoError(e)))?;
    let map = Map::from_map_data(MapData::from_fd(fd).map_err(aya)?).map_err(aya)?;
    HashMap::try_from(map).map_err(aya)
}

/// A kernel hash (or LRU hash) map of `K` to `V`.
pub struct KernelTable<K, V> {
    data: MapData,
    aya: HashMap<MapData, K, V>,
    batch: BatchReader<K, V>,
}

impl<K: Pod, V: Pod> KernelTable<K, V> {
    /// The map behind `data`, read `chunk` entries per syscall.
    pub fn new(data: MapData, chunk: u32) -> Result<Self, SysError> {
        Ok(Self {
            aya: aya_handle(&data)?,
            data,
            batch: BatchReader::new(chunk),
        })
    }

    /// The map's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.data.fd().as_fd()
    }

    /// Every entry, in the kernel's order.
    pub fn read_all(&mut self) -> Result<Entries<'_, K, V>, SysError> {
        self.batch.read_all(self.data.fd().as_fd())
    }

    /// Deletes `key` (gone already is fine).
    pub fn remove(&mut self, key: &K) -> Result<(), SysError> {
        match self.aya.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(SysError::Aya(Box::new(e))),
        }
    }

    /// Moves each of `keys` out of the kernel as `eviction` allows, handing `fold` its final
    /// value (`None`: it was gone already).
    pub fn take_each<'k>(
        &mut self,
        eviction: Eviction,
        keys: impl IntoIterator<Item = &'k K>,
        mut fold: impl FnMut(&K, Option<V>),
    ) -> Result<(), SysError>
    where
        K: 'k,
    {
        let typed = TypedMap::<K, V>::new(self.data.fd().as_fd())?;
        for key in keys {
            fold(key, eviction.take(&typed, Some(&mut self.aya), key)?);
        }
        Ok(())
    }
}
