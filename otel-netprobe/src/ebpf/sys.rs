//! Raw `bpf(2)` map syscalls that aya 0.14 lacks: batched lookup and delete,
//! lookup-and-delete, per-CPU array reads, and helpers for the possible-CPU
//! count and the kernel's memlock accounting of a map.
//!
//! Every typed operation checks the map's key and value sizes (from
//! `BPF_OBJ_GET_INFO_BY_FD`) against `size_of::<K>()` / `size_of::<V>()`, so
//! the kernel never writes past a buffer we hand it. [`TypedMap`] checks once
//! and then borrows the fd, which keeps it referring to the same map.

use std::fs;
use std::io;
use std::marker::PhantomData;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

/// `BPF_MAP_TYPE_HASH`.
pub const MAP_TYPE_HASH: u32 = 1;
/// `BPF_MAP_TYPE_ARRAY`.
pub const MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_PERCPU_HASH`.
pub const MAP_TYPE_PERCPU_HASH: u32 = 5;
/// `BPF_MAP_TYPE_PERCPU_ARRAY`.
pub const MAP_TYPE_PERCPU_ARRAY: u32 = 6;
/// Update flag: create or overwrite.
pub const BPF_ANY: u64 = 0;
/// Update flag: create only.
pub const BPF_NOEXIST: u64 = 1;

/// Errors from the BPF map syscalls in this module.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// The `bpf(2)` syscall failed.
    #[error("bpf command {cmd} failed")]
    Syscall {
        /// Name of the `bpf` command.
        cmd: &'static str,
        /// The errno reported by the kernel.
        #[source]
        source: io::Error,
    },
    /// A map size (or the per-CPU value count) does not match the Rust side.
    #[error("map {what} is {map} but the caller expects {want}")]
    SizeMismatch {
        /// `"key size"`, `"value size"` or `"cpu count"`.
        what: &'static str,
        /// What the kernel reports.
        map: u32,
        /// What the Rust type or argument implies.
        want: usize,
    },
    /// The operation does not support this map type.
    #[error("{op} does not support map type {map_type}")]
    UnsupportedMapType {
        /// The operation attempted.
        op: &'static str,
        /// The kernel's `bpf_map_type`.
        map_type: u32,
    },
    /// Reading `/sys/devices/system/cpu/possible` failed.
    #[error("failed to read {path}")]
    Read {
        /// The file that could not be read.
        path: &'static str,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The possible-CPU list could not be parsed.
    #[error("cannot parse CPU list {text:?}")]
    CpuList {
        /// The offending text.
        text: String,
    },
    /// A bucket overflowed the batch even at the largest chunk size.
    #[error("batch chunk size {chunk} cannot grow further")]
    ChunkOverflow {
        /// The chunk size that could not be doubled.
        chunk: u32,
    },
}

/// Marker for plain-old-data types copied to and from the kernel as bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]` or primitive, hold no pointers, and
/// accept every bit pattern as a valid value. Their size must equal the map's
/// key or value size (checked at run time).
pub unsafe trait Plain: Copy + 'static {}

macro_rules! plain {
    ($($t:ty),*) => {$(
        // SAFETY: primitive integers accept any bit pattern.
        unsafe impl Plain for $t {}
    )*};
}
plain!(u8, u16, u32, u64, i32, i64);
// SAFETY: an array of `Plain` values has no padding and accepts any bits.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

/// Leading fields of the kernel's `struct bpf_map_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapInfo {
    /// `bpf_map_type`.
    pub map_type: u32,
    /// Kernel-global map id.
    pub id: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes (per CPU for per-CPU maps).
    pub value_size: u32,
    /// Maximum number of entries.
    pub max_entries: u32,
    /// Creation flags.
    pub map_flags: u32,
    /// NUL-padded map name.
    pub name: [u8; 16],
}

impl MapInfo {
    /// Whether values are stored once per possible CPU.
    #[must_use]
    pub fn is_percpu(&self) -> bool {
        // PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH, PERCPU_CGROUP_STORAGE.
        matches!(self.map_type, 5 | 6 | 10 | 21)
    }
}

// Attr layouts mirror members of `union bpf_attr`. They have no implicit
// padding, so every byte the kernel reads (and checks to be zero) is defined.
/// `{ u32 map_fd; u32 pad; u64 key; u64 value; u64 flags; }`
#[repr(C)]
struct ElemAttr(u32, u32, u64, u64, u64);

/// `{ u32 bpf_fd; u32 info_len; u64 info; }`
#[repr(C)]
struct InfoAttr(u32, u32, u64);

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf<T>(cmd: u32, name: &'static str, attr: &mut T) -> Result<i64, SysError> {
    // SAFETY: `attr` is an exclusively borrowed `#[repr(C)]` struct laid out
    // like the `union bpf_attr` member for `cmd`, and its pointers (set up by
    // the caller) reference live buffers of the sizes the kernel will use.
    let ret = unsafe {
        let attr = std::ptr::from_mut(attr);
        libc::syscall(libc::SYS_bpf, libc::c_long::from(cmd), attr, size_of::<T>())
    };
    if ret < 0 {
        let source = io::Error::last_os_error();
        Err(SysError::Syscall { cmd: name, source })
    } else {
        Ok(ret)
    }
}

/// Maps `ENOENT` to `Ok(false)`.
fn found(res: Result<i64, SysError>) -> Result<bool, SysError> {
    match res {
        Err(SysError::Syscall { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        other => other.map(|_| true),
    }
}

fn addr<T>(p: *const T) -> u64 {
    p as usize as u64
}

fn check(what: &'static str, map: u32, want: usize) -> Result<(), SysError> {
    let ok = map as usize == want;
    ok.then_some(())
        .ok_or(SysError::SizeMismatch { what, map, want })
}

/// Reads the map's metadata with `BPF_OBJ_GET_INFO_BY_FD`.
pub fn map_info(fd: BorrowedFd<'_>) -> Result<MapInfo, SysError> {
    let mut info = MapInfo::default();
    let (len, ptr) = (size_of::<MapInfo>() as u32, addr(&raw mut info));
    let mut attr = InfoAttr(fd.as_raw_fd() as u32, len, ptr);
    bpf(15, "BPF_OBJ_GET_INFO_BY_FD", &mut attr)?;
    Ok(info)
}

/// Number of possible CPUs (values per key in per-CPU maps), read once from
/// `/sys/devices/system/cpu/possible` and cached.
pub fn possible_cpus() -> Result<usize, SysError> {
    static CACHE: OnceLock<usize> = OnceLock::new();
    if let Some(n) = CACHE.get() {
        return Ok(*n);
    }
    let path = "/sys/devices/system/cpu/possible";
    let text = fs::read_to_string(path).map_err(|source| SysError::Read { path, source })?;
    let n = parse_cpu_list(&text).ok_or(SysError::CpuList { text })?;
    Ok(*CACHE.get_or_init(|| n))
}

/// Counts the CPUs in a kernel CPU list such as `0-63` or `0,2-5`; `None` if
/// malformed or empty.
#[must_use]
pub fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut count = 0usize;
    for part in text.trim().split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi) = (lo.parse::<usize>().ok()?, hi.parse::<usize>().ok()?);
        count = count.checked_add(hi.checked_sub(lo)? + 1)?;
    }
    (count > 0).then_some(count)
}

/// The kernel's `memlock:` figure for the map behind `fd`, in bytes, from
/// `/proc/self/fdinfo/<fd>`.
#[must_use]
pub fn map_memlock_bytes(fd: BorrowedFd<'_>) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("memlock:"))?;
    line.trim().parse().ok()
}

/// Creates a map with `BPF_MAP_CREATE` (for tests and benchmarks).
pub fn create_map(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
) -> Result<OwnedFd, SysError> {
    // map_type, key_size, value_size, max_entries, map_flags, then zeroes for
    // inner_map_fd, numa_node, map_name[16], ifindex and the BTF ids: 64 bytes.
    let mut attr = [0u32; 16];
    attr[..5].copy_from_slice(&[map_type, key_size, value_size, max_entries, flags]);
    let fd = bpf(0, "BPF_MAP_CREATE", &mut attr)?;
    // SAFETY: on success BPF_MAP_CREATE returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A map fd whose key/value sizes were checked against `K`/`V` once; the
/// borrow keeps the fd (and so the map) alive and unchanged.
#[derive(Debug, Clone, Copy)]
pub struct TypedMap<'fd, K, V> {
    fd: BorrowedFd<'fd>,
    info: MapInfo,
    per_key: usize,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<'fd, K: Plain, V: Plain> TypedMap<'fd, K, V> {
    /// Checks the map's key size against `K` and its (per-CPU) value size
    /// against `V`.
    pub fn new(fd: BorrowedFd<'fd>) -> Result<Self, SysError> {
        let info = map_info(fd)?;
        if size_of::<K>() == 0 || size_of::<V>() == 0 {
            let (op, map_type) = ("zero-sized key or value", info.map_type);
            return Err(SysError::UnsupportedMapType { op, map_type });
        }
        check("key size", info.key_size, size_of::<K>())?;
        check("value size", info.value_size, size_of::<V>())?;
        let per_key = if info.is_percpu() {
            possible_cpus()?
        } else {
            1
        };
        Ok(Self {
            fd,
            info,
            per_key,
            _types: PhantomData,
        })
    }

    /// The map's metadata.
    #[must_use]
    pub fn info(&self) -> &MapInfo {
        &self.info
    }

    /// Values per key: the possible-CPU count for per-CPU maps, else 1.
    #[must_use]
    pub fn values_per_key(&self) -> usize {
        self.per_key
    }

    /// Bytes per CPU slot: per-CPU values are padded to 8 bytes each.
    fn slot(&self) -> usize {
        if self.info.is_percpu() {
            size_of::<V>().next_multiple_of(8)
        } else {
            size_of::<V>()
        }
    }

    fn elem(
        &self,
        cmd: u32,
        name: &'static str,
        key: &K,
        val: *mut u8,
        flags: u64,
    ) -> Result<bool, SysError> {
        let (key, value) = (addr(std::ptr::from_ref(key)), addr(val));
        let mut attr = ElemAttr(self.fd.as_raw_fd() as u32, 0, key, value, flags);
        found(bpf(cmd, name, &mut attr))
    }

    /// `BPF_MAP_LOOKUP_ELEM`: the key's value(s), one per CPU for per-CPU maps.
    pub fn lookup(&self, key: &K) -> Result<Option<Vec<V>>, SysError> {
        let mut raw = vec![0u8; self.slot() * self.per_key];
        if !self.elem(1, "BPF_MAP_LOOKUP_ELEM", key, raw.as_mut_ptr(), 0)? {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(self.per_key);
        decode(&raw, self.slot(), &mut out);
        Ok(Some(out))
    }

    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` (hash maps, kernel ≥ 5.14) on a
    /// non-per-CPU map; a missing key gives `Ok(None)`.
    pub fn lookup_and_delete(&self, key: &K) -> Result<Option<V>, SysError> {
        if self.info.is_percpu() {
            let (op, map_type) = ("lookup_and_delete", self.info.map_type);
            return Err(SysError::UnsupportedMapType { op, map_type });
        }
        let mut out = std::mem::MaybeUninit::<V>::zeroed();
        let name = "BPF_MAP_LOOKUP_AND_DELETE_ELEM";
        if self.elem(21, name, key, out.as_mut_ptr().cast(), 0)? {
            // SAFETY: the buffer is zero-initialised and `V: Plain` accepts any bits.
            Ok(Some(unsafe { out.assume_init() }))
        } else {
            Ok(None)
        }
    }

    /// `BPF_MAP_UPDATE_ELEM`; `values` holds [`Self::values_per_key`] values.
    pub fn update(&self, key: &K, values: &[V], flags: u64) -> Result<(), SysError> {
        check("cpu count", self.per_key as u32, values.len())?;
        let mut raw = vec![0u8; self.slot() * self.per_key];
        for (slot, v) in raw.chunks_exact_mut(self.slot()).zip(values) {
            // SAFETY: `slot` has at least size_of::<V>() bytes; write is unaligned.
            unsafe { slot.as_mut_ptr().cast::<V>().write_unaligned(*v) };
        }
        self.elem(2, "BPF_MAP_UPDATE_ELEM", key, raw.as_mut_ptr(), flags)?;
        Ok(())
    }

    /// `BPF_MAP_DELETE_BATCH`; returns how many of `keys` were deleted.
    ///
    /// The kernel (`generic_map_delete_batch`) stops at the first key that
    /// fails, returning `ENOENT` for a missing key with `count` = keys deleted
    /// before it. We skip that key and resume with the rest.
    pub fn delete_batch(&self, keys: &[K]) -> Result<usize, SysError> {
        let (mut deleted, mut rest) = (0, keys);
        while !rest.is_empty() {
            let n = rest.len().min(u32::MAX as usize);
            let (keys, map_fd) = (addr(rest.as_ptr()), self.fd.as_raw_fd() as u32);
            let mut attr = BatchAttr {
                keys,
                map_fd,
                ..BatchAttr::default()
            };
            attr.count = n as u32;
            let ok = found(bpf(27, "BPF_MAP_DELETE_BATCH", &mut attr))?;
            let done = (attr.count as usize).min(n);
            deleted += done;
            let skip = if ok { done.max(1) } else { done + 1 };
            rest = rest.get(skip..).unwrap_or_default();
        }
        Ok(deleted)
    }
}

/// Appends one `T` per `slot`-sized chunk of `raw` (`slot >= size_of::<T>()`).
fn decode<T: Plain>(raw: &[u8], slot: usize, out: &mut Vec<T>) {
    debug_assert!(slot >= size_of::<T>());
    for chunk in raw.chunks_exact(slot) {
        // SAFETY: `chunk` holds at least size_of::<T>() initialised bytes,
        // `T: Plain` accepts any bits, and the read tolerates misalignment.
        out.push(unsafe { chunk.as_ptr().cast::<T>().read_unaligned() });
    }
}

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`; see [`TypedMap::lookup_and_delete`].
pub fn lookup_and_delete<K: Plain, V: Plain>(
    fd: BorrowedFd<'_>,
    key: &K,
) -> Result<Option<V>, SysError> {
    TypedMap::<K, V>::new(fd)?.lookup_and_delete(key)
}

/// `BPF_MAP_DELETE_BATCH`; see [`TypedMap::delete_batch`].
pub fn delete_batch<K: Plain>(fd: BorrowedFd<'_>, keys: &[K]) -> Result<usize, SysError> {
    let info = map_info(fd)?;
    check("key size", info.key_size, size_of::<K>())?;
    let map = TypedMap::<K, u8> {
        fd,
        info,
        per_key: 1,
        _types: PhantomData,
    };
    map.delete_batch(keys)
}

/// `BPF_MAP_UPDATE_ELEM` on a non-per-CPU map (use [`TypedMap::update`] for
/// per-CPU maps).
pub fn update_elem<K: Plain, V: Plain>(
    fd: BorrowedFd<'_>,
    key: &K,
    value: &V,
    flags: u64,
) -> Result<(), SysError> {
    TypedMap::<K, V>::new(fd)?.update(key, std::slice::from_ref(value), flags)
}

/// Reads slot `index` of a `BPF_MAP_TYPE_PERCPU_ARRAY` of `u64`, one value
/// per CPU; `nr_cpus` must equal [`possible_cpus`].
pub fn lookup_percpu_array_u64(
    fd: BorrowedFd<'_>,
    index: u32,
    nr_cpus: usize,
) -> Result<Vec<u64>, SysError> {
    let map = TypedMap::<u32, u64>::new(fd)?;
    if map.info.map_type != MAP_TYPE_PERCPU_ARRAY {
        let (op, map_type) = ("lookup_percpu_array_u64", map.info.map_type);
        return Err(SysError::UnsupportedMapType { op, map_type });
    }
    check("cpu count", map.per_key as u32, nr_cpus)?;
    map.lookup(&index)?.ok_or_else(|| SysError::Syscall {
        cmd: "BPF_MAP_LOOKUP_ELEM",
        source: io::Error::from_raw_os_error(libc::ENOENT),
    })
}

/// Reads a whole map with `BPF_MAP_LOOKUP_BATCH`, reusing its buffers between
/// calls (no allocation once warmed up to the map's size).
///
/// Works for hash, LRU hash and array maps and their per-CPU variants. Entries
/// changed while reading may be missed or seen twice.
#[derive(Debug)]
pub struct BatchReader<K, V> {
    chunk: u32,
    raw_keys: Vec<u8>,
    raw_values: Vec<u8>,
    tokens: Vec<u64>,
    keys: Vec<K>,
    values: Vec<V>,
}

/// Result of [`BatchReader::read_all`].
#[derive(Debug, Clone, Copy)]
pub struct Entries<'a, K, V> {
    /// All keys, in kernel iteration order.
    pub keys: &'a [K],
    /// `per_key` consecutive values for each key.
    pub values: &'a [V],
    /// Values per key: possible CPUs for per-CPU maps, else 1.
    pub per_key: usize,
}

impl<'a, K, V> Entries<'a, K, V> {
    /// Iterates `(key, values_for_that_key)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'a K, &'a [V])> + use<'a, K, V> {
        self.keys
            .iter()
            .zip(self.values.chunks_exact(self.per_key.max(1)))
    }
}

impl<K: Plain, V: Plain> BatchReader<K, V> {
    /// A reader asking for `chunk` entries per syscall (256–4096 is sensible;
    /// it doubles itself whenever a hash bucket does not fit).
    #[must_use]
    pub fn new(chunk: u32) -> Self {
        let (raw_keys, raw_values, tokens) = (Vec::new(), Vec::new(), Vec::new());
        let (keys, values) = (Vec::new(), Vec::new());
        Self {
            chunk: chunk.max(1),
            raw_keys,
            raw_values,
            tokens,
            keys,
            values,
        }
    }

    /// Current chunk size, after any `ENOSPC` doubling.
    #[must_use]
    pub fn chunk(&self) -> u32 {
        self.chunk
    }

    /// Reads every entry of the map behind `fd`.
    ///
    /// Passes the opaque batch token back each call (a `u32` bucket index for
    /// hash maps, a key-sized cursor for arrays), treats `ENOENT` as the end
    /// while keeping the entries returned with it, and on `ENOSPC` (a bucket
    /// larger than the chunk) doubles the chunk and retries.
    pub fn read_all(&mut self, fd: BorrowedFd<'_>) -> Result<Entries<'_, K, V>, SysError> {
        let map = TypedMap::<K, V>::new(fd)?;
        let (ksz, slot, per_key) = (size_of::<K>(), map.slot(), map.per_key);
        let words = ksz.max(8).div_ceil(8);
        self.tokens.clear();
        self.tokens.resize(words * 2, 0);
        self.keys.clear();
        self.values.clear();
        let mut first = true;
        loop {
            let chunk = self.chunk as usize;
            if self.raw_keys.len() < chunk * ksz {
                self.raw_keys.resize(chunk * ksz, 0);
            }
            if self.raw_values.len() < chunk * slot * per_key {
                self.raw_values.resize(chunk * slot * per_key, 0);
            }
            let (in_tok, out_tok) = self.tokens.split_at_mut(words);
            let mut attr = BatchAttr {
                in_batch: if first { 0 } else { addr(in_tok.as_ptr()) },
                out_batch: addr(out_tok.as_mut_ptr()),
                keys: addr(self.raw_keys.as_mut_ptr()),
                values: addr(self.raw_values.as_mut_ptr()),
                count: self.chunk,
                map_fd: fd.as_raw_fd() as u32,
                ..BatchAttr::default()
            };
            let more = match found(bpf(24, "BPF_MAP_LOOKUP_BATCH", &mut attr)) {
                Err(SysError::Syscall { source, .. })
                    if source.raw_os_error() == Some(libc::ENOSPC) && attr.count == 0 =>
                {
                    let chunk = self.chunk;
                    self.chunk = chunk
                        .checked_mul(2)
                        .ok_or(SysError::ChunkOverflow { chunk })?;
                    continue;
                }
                res => res?,
            };
            let got = (attr.count as usize).min(chunk);
            decode(&self.raw_keys[..got * ksz], ksz, &mut self.keys);
            let values = &self.raw_values[..got * slot * per_key];
            decode(values, slot, &mut self.values);
            if !more {
                break;
            }
            in_tok.copy_from_slice(out_tok);
            first = false;
        }
        Ok(Entries {
            keys: &self.keys,
            values: &self.values,
            per_key,
        })
    }
}
