//! The `bpf(2)` map operations aya 0.14 lacks: batched lookup (`BPF_MAP_LOOKUP_BATCH`, about
//! 4x cheaper per entry than `iter()`) and lookup-and-delete on hash maps, plus the kernel's
//! memlock accounting of a map (from fdinfo). Everything else — command numbers, the
//! `bpf_attr` layouts, map types, [`Pod`], the possible-CPU count, map creation and per-CPU
//! reads — comes from aya and aya-obj.
//!
//! Every operation checks the map's key and value sizes (`BPF_OBJ_GET_INFO_BY_FD`) against
//! `size_of::<K>()` / `size_of::<V>()`, so the kernel never writes past a buffer we hand it.
//! [`TypedMap`] checks once and then borrows the fd, which keeps it referring to the same map.

use std::{
    fs, io,
    marker::PhantomData,
    mem::size_of,
    os::fd::{AsRawFd, BorrowedFd},
};

use aya::Pod;
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_map_info, bpf_map_type};

/// Errors from the map syscalls in this module.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    /// The `bpf(2)` syscall failed.
    #[error("bpf command {cmd:?} failed")]
    Syscall {
        /// The `bpf` command.
        cmd: bpf_cmd,
        /// The errno reported by the kernel.
        #[source]
        source: io::Error,
    },
    /// A map size does not match the Rust side.
    #[error("map {what} is {map} but the caller expects {want}")]
    SizeMismatch {
        /// `"key size"` or `"value size"`.
        what: &'static str,
        /// What the kernel reports.
        map: u32,
        /// What the Rust type implies.
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
    /// The possible-CPU count could not be read.
    #[error("reading {path} failed")]
    Cpus {
        /// The file aya read.
        path: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An operation through aya's map types failed.
    #[error("map operation failed")]
    Aya(#[source] Box<aya::maps::MapError>),
    /// A bucket overflowed the batch even at the largest chunk size.
    #[error("batch chunk size {chunk} cannot grow further")]
    ChunkOverflow {
        /// The chunk size that could not be doubled.
        chunk: u32,
    },
}

fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> Result<(), SysError> {
    // SAFETY: `attr` is an exclusively borrowed `bpf_attr`, zero-initialised by the caller
    // except for the member `cmd` reads, whose pointers reference live buffers of the sizes
    // the kernel will use.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut(attr),
            size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        let source = io::Error::last_os_error();
        Err(SysError::Syscall { cmd, source })
    } else {
        Ok(())
    }
}

fn zeroed() -> bpf_attr {
    // SAFETY: `bpf_attr` is a C union of integer structs: all-zero is valid (and what the
    // kernel requires of the bytes a command does not use).
    unsafe { std::mem::zeroed() }
}

/// Maps `ENOENT` to `Ok(false)`.
fn found(res: Result<(), SysError>) -> Result<bool, SysError> {
    match res {
        Err(SysError::Syscall { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        other => other.map(|()| true),
    }
}

fn addr<T>(p: *const T) -> u64 {
    p as usize as u64
}

fn check(what: &'static str, map: u32, want: usize) -> Result<(), SysError> {
    (map as usize == want)
        .then_some(())
        .ok_or(SysError::SizeMismatch { what, map, want })
}

/// The map's metadata (`BPF_OBJ_GET_INFO_BY_FD`).
fn map_info(fd: BorrowedFd<'_>) -> Result<bpf_map_info, SysError> {
    // SAFETY: plain integers; all-zero is valid.
    let mut info: bpf_map_info = unsafe { std::mem::zeroed() };
    let mut attr = zeroed();
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_map_info>() as u32;
    attr.info.info = addr(&raw mut info);
    bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

/// Whether values are stored once per possible CPU.
fn is_percpu(map_type: u32) -> bool {
    use bpf_map_type::{
        BPF_MAP_TYPE_LRU_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
        BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE_DEPRECATED, BPF_MAP_TYPE_PERCPU_HASH,
    };
    [
        BPF_MAP_TYPE_PERCPU_HASH,
        BPF_MAP_TYPE_PERCPU_ARRAY,
        BPF_MAP_TYPE_LRU_PERCPU_HASH,
        BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE_DEPRECATED,
    ]
    .iter()
    .any(|t| *t as u32 == map_type)
}

/// The kernel's `memlock:` figure for the map behind `fd`, in bytes, from
/// `/proc/self/fdinfo/<fd>`.
#[must_use]
pub fn map_memlock_bytes(fd: BorrowedFd<'_>) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("memlock:"))?;
    line.trim().parse().ok()
}

/// A map fd whose key/value sizes were checked against `K`/`V` once; the borrow keeps the fd
/// (and so the map) alive and unchanged.
#[derive(Clone, Copy)]
pub struct TypedMap<'fd, K, V> {
    fd: BorrowedFd<'fd>,
    map_type: u32,
    /// Values per key: the possible-CPU count for per-CPU maps, else 1.
    per_key: usize,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<'fd, K: Pod, V: Pod> TypedMap<'fd, K, V> {
    /// Checks the map's key size against `K` and its (per-CPU) value size against `V`.
    pub fn new(fd: BorrowedFd<'fd>) -> Result<Self, SysError> {
        let info = map_info(fd)?;
        if size_of::<K>() == 0 || size_of::<V>() == 0 {
            let (op, map_type) = ("zero-sized key or value", info.type_);
            return Err(SysError::UnsupportedMapType { op, map_type });
        }
        check("key size", info.key_size, size_of::<K>())?;
        check("value size", info.value_size, size_of::<V>())?;
        let per_key = if is_percpu(info.type_) {
            aya::util::nr_cpus().map_err(|(path, source)| SysError::Cpus { path, source })?
        } else {
            1
        };
        Ok(Self {
            fd,
            map_type: info.type_,
            per_key,
            _types: PhantomData,
        })
    }

    /// Bytes per CPU slot: per-CPU values are padded to 8 bytes each.
    fn slot(&self) -> usize {
        if is_percpu(self.map_type) {
            size_of::<V>().next_multiple_of(8)
        } else {
            size_of::<V>()
        }
    }

    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` (hash maps, kernel ≥ 5.14) on a non-per-CPU map: the
    /// entry's final value, atomically with its deletion; a missing key gives `Ok(None)`.
    pub fn lookup_and_delete(&self, key: &K) -> Result<Option<V>, SysError> {
        if is_percpu(self.map_type) {
            let (op, map_type) = ("lookup_and_delete", self.map_type);
            return Err(SysError::UnsupportedMapType { op, map_type });
        }
        let mut out = std::mem::MaybeUninit::<V>::zeroed();
        let mut attr = zeroed();
        attr.__bindgen_anon_2.map_fd = self.fd.as_raw_fd() as u32;
        attr.__bindgen_anon_2.key = addr(std::ptr::from_ref(key));
        attr.__bindgen_anon_2.__bindgen_anon_1.value = addr(out.as_mut_ptr());
        if found(bpf(bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_ELEM, &mut attr))? {
            // SAFETY: the buffer is zero-initialised and `V: Pod` accepts any bits.
            Ok(Some(unsafe { out.assume_init() }))
        } else {
            Ok(None)
        }
    }
}

/// Appends one `T` per `slot`-sized chunk of `raw` (`slot >= size_of::<T>()`).
fn decode<T: Pod>(raw: &[u8], slot: usize, out: &mut Vec<T>) {
    debug_assert!(slot >= size_of::<T>());
    for chunk in raw.chunks_exact(slot) {
        // SAFETY: `chunk` holds at least size_of::<T>() initialised bytes, `T: Pod` accepts
        // any bits, and the read tolerates misalignment.
        out.push(unsafe { chunk.as_ptr().cast::<T>().read_unaligned() });
    }
}

/// Reads a whole map with `BPF_MAP_LOOKUP_BATCH`, reusing its buffers between calls (no
/// allocation once warmed up to the map's size).
///
/// Works for hash, LRU hash and array maps and their per-CPU variants. Entries changed while
/// reading may be missed or seen twice.
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

impl<K: Pod, V: Pod> BatchReader<K, V> {
    /// A reader asking for `chunk` entries per syscall (256–4096 is sensible; it doubles
    /// itself whenever a hash bucket does not fit).
    #[must_use]
    pub fn new(chunk: u32) -> Self {
        Self {
            chunk: chunk.max(1),
            raw_keys: Vec::new(),
            raw_values: Vec::new(),
            tokens: Vec::new(),
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Current chunk size, after any `ENOSPC` doubling.
    #[must_use]
    pub fn chunk(&self) -> u32 {
        self.chunk
    }

    /// Reads every entry of the map behind `fd`.
    ///
    /// Passes the opaque batch token back each call (a `u32` bucket index for hash maps, a
    /// key-sized cursor for arrays), treats `ENOENT` as the end while keeping the entries
    /// returned with it, and on `ENOSPC` (a bucket larger than the chunk) doubles the chunk
    /// and retries.
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
            let mut attr = zeroed();
            attr.batch.in_batch = if first { 0 } else { addr(in_tok.as_ptr()) };
            attr.batch.out_batch = addr(out_tok.as_mut_ptr());
            attr.batch.keys = addr(self.raw_keys.as_mut_ptr());
            attr.batch.values = addr(self.raw_values.as_mut_ptr());
            attr.batch.count = self.chunk;
            attr.batch.map_fd = fd.as_raw_fd() as u32;
            let res = bpf(bpf_cmd::BPF_MAP_LOOKUP_BATCH, &mut attr);
            // SAFETY: the kernel wrote `count` back into the same member.
            let count = unsafe { attr.batch.count };
            let more = match found(res) {
                Err(SysError::Syscall { source, .. })
                    if source.raw_os_error() == Some(libc::ENOSPC) && count == 0 =>
                {
                    let chunk = self.chunk;
                    self.chunk = chunk
                        .checked_mul(2)
                        .ok_or(SysError::ChunkOverflow { chunk })?;
                    continue;
                }
                res => res?,
            };
            let got = (count as usize).min(chunk);
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
