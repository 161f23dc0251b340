//! The agent's bpffs directory: what survives a restart. One directory per network namespace,
//! `<pinning.path>/netns-<inode>/`, holding the shared maps (by their object names), our meta
//! map ([`netprobe_ebpf::META_MAP`]: layout version and start time) and `links/`, the pinned
//! XDP and TCX links (`xdp-<ifindex>`, `tcx-ingress-<ifindex>`, `tcx-egress-<ifindex>`).
//! Programs are never pinned: every agent loads its own and swaps them into the links.
//!
//! Imports nothing above the kernel stage; the attacher and the loader use it.

pub mod carry;
pub mod layout;

use std::{
    io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aya::maps::{Array, Map, MapData};
use aya_obj::generated::bpf_map_type;
use netprobe_ebpf::{LAYOUT_VERSION, META_MAP};
use tracing::{info, warn};

use crate::config::PinningConfig;

/// `statfs` magic of a bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Slots of the meta map.
const META_VERSION: u32 = 0;
const META_START_NS: u32 = 1;
const META_SLOTS: u32 = 4;

/// The pin directory could not be used (the agent then runs unpinned).
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The path is not on a bpffs.
    #[error("{} is not on a bpffs (mount one there, e.g. the node's /sys/fs/bpf)", path.display())]
    NotBpffs {
        /// The path (or its nearest existing parent).
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("{what} {} failed", path.display())]
    Io {
        /// What was tried.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The meta map could not be created or pinned.
    #[error("creating the pinned meta map failed")]
    Meta(#[source] Box<aya::maps::MapError>),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PinError + 'a {
    move |source| PinError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Whether `path` is on a bpffs.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: all-zero is a valid `statfs`; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` and `st` are live for the call.
    if unsafe { libc::statfs(c.as_ptr(), &raw mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(
        clippy::unnecessary_cast,
        reason = "f_type's type differs between libcs"
    )]
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// The inode of the calling thread's network namespace (the agent's threads all share it).
pub fn netns_inode() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// This network namespace's directory under `cfg.path` (not created).
pub fn netns_dir(cfg: &PinningConfig) -> io::Result<PathBuf> {
    Ok(cfg.path.join(format!("netns-{}", netns_inode()?)))
}

/// This agent's pin directory.
#[derive(Clone, Debug)]
pub struct PinDir {
    dir: PathBuf,
    /// Whether the pinned state was adopted at start (its carry store is then read back).
    adopted: bool,
}

/// How the pinned state was found at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing pinned: a fresh start.
    Fresh,
    /// Compatible state adopted: the kernel's counts continue.
    Adopted,
    /// Incompatible state replaced.
    Replaced,
}

impl PinDir {
    /// Opens (creating) this namespace's directory under `cfg.path`; `Ok(None)` when pinning
    /// is off. The path (or its nearest existing parent) must be on a bpffs.
    pub fn open(cfg: &PinningConfig) -> Result<Option<Self>, PinError> {
        if !cfg.enabled {
            return Ok(None);
        }
        let mut probe = cfg.path.as_path();
        while !probe.exists() {
            probe = probe.parent().unwrap_or(Path::new("/"));
        }
        if !is_bpffs(probe).map_err(io_err("statfs", probe))? {
            return Err(PinError::NotBpffs {
                path: probe.to_owned(),
            });
        }
        let dir =
            netns_dir(cfg).map_err(io_err("reading", Path::new("/proc/thread-self/ns/net")))?;
        let links = dir.join("links");
        std::fs::create_dir_all(&links).map_err(io_err("creating", &links))?;
        Ok(Some(Self {
            dir,
            adopted: false,
        }))
    }

    /// The directory at `dir`, as it is (for removing it).
    pub fn at(dir: PathBuf) -> Self {
        Self {
            dir,
            adopted: false,
        }
    }

    /// The carry store of user space's totals ([`carry`]), for `capacity` flows: the pinned
    /// one when the pinned state was adopted and it fits, else a new, empty one.
    pub fn carry<V: aya::Pod>(
        &self,
        capacity: u32,
    ) -> Result<carry::CarryStore<V>, crate::ebpf::sys::SysError> {
        carry::CarryStore::open(&self.dir, capacity, self.adopted)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The pin of map `name`.
    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The pin of a link of `kind` (`xdp`, `tcx-ingress`, `tcx-egress`) on interface `index`.
    pub fn link(&self, kind: &str, index: u32) -> PathBuf {
        self.dir.join("links").join(format!("{kind}-{index}"))
    }

    /// Every pinned link: kind, interface index, path.
    pub fn links(&self) -> Vec<(String, u32, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("links")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let (kind, index) = name.rsplit_once('-')?;
                Some((kind.to_owned(), index.parse().ok()?, e.path()))
            })
            .collect()
    }

    /// The layout version and start time in the meta map (`None`: no readable meta map).
    fn read_meta(&self) -> Option<(u32, SystemTime)> {
        let data = MapData::from_pin(self.map(META_MAP)).ok()?;
        let meta: Array<MapData, u64> = Array::try_from(Map::Array(data)).ok()?;
        let version = u32::try_from(meta.get(&META_VERSION, 0).ok()?).ok()?;
        let start = UNIX_EPOCH + Duration::from_nanos(meta.get(&META_START_NS, 0).ok()?);
        Some((version, start))
    }

    /// Pins a new meta map of this layout and start time `started`.
    fn write_meta(&self, started: SystemTime) -> Result<(), PinError> {
        let meta_err = |e| PinError::Meta(Box::new(e));
        let path = self.map(META_MAP);
        let _ = std::fs::remove_file(&path);
        let def = aya_obj::Map::new_from_params(
            bpf_map_type::BPF_MAP_TYPE_ARRAY as u32,
            4,
            8,
            META_SLOTS,
            0,
        );
        let data = MapData::create(def, META_MAP, None).map_err(meta_err)?;
        data.pin(&path).map_err(|e| PinError::Io {
            what: "pinning",
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        let mut meta: Array<MapData, u64> = Array::try_from(Map::Array(data)).map_err(meta_err)?;
        let ns = started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        meta.set(META_VERSION, u64::from(LAYOUT_VERSION), 0)
            .map_err(meta_err)?;
        meta.set(META_START_NS, ns, 0).map_err(meta_err)?;
        Ok(())
    }

    /// Checks what is pinned against `shapes` (the object's maps): adopts compatible state
    /// (returning its start time), or replaces incompatible state with one log line (the
    /// links stay: the new programs are swapped into them). Returns the start time of every
    /// cumulative series.
    pub fn prepare(&self, shapes: &[layout::Shape]) -> Result<(Found, SystemTime), PinError> {
        let meta = self.read_meta();
        let found = match layout::verdict(&self.dir, shapes, meta.map(|m| m.0)) {
            layout::Verdict::Compatible => {
                if let Some((_, started)) = meta {
                    info!(dir = %self.dir.display(), "adopting the pinned maps: counting continues");
                    return Ok((Found::Adopted, started));
                }
                Found::Fresh
            }
            layout::Verdict::Empty => Found::Fresh,
            layout::Verdict::Incompatible(reason) => {
                warn!("pinned state from an incompatible layout ({reason}): replacing it");
                self.remove_maps(shapes);
                Found::Replaced
            }
        };
        let now = SystemTime::now();
        self.write_meta(now)?;
        Ok((found, now))
    }

    /// Unpins the maps of `shapes`, the meta map and the carry store; returns the names
    /// removed.
    pub fn remove_maps(&self, shapes: &[layout::Shape]) -> Vec<String> {
        shapes
            .iter()
            .map(|s| s.name.as_str())
            .chain([META_MAP, carry::CARRY_MAP])
            .filter(|name| std::fs::remove_file(self.map(name)).is_ok())
            .map(str::to_owned)
            .collect()
    }

    /// Removes everything left in the directory (pins of maps and links), the directory, and
    /// its parent if that is now empty; returns what was unpinned. Unpinning the last
    /// reference to a link detaches it.
    pub fn remove_all(&self) -> Vec<String> {
        let mut removed = Vec::new();
        for (kind, index, path) in self.links() {
            if std::fs::remove_file(&path).is_ok() {
                removed.push(format!("link {kind} on interface {index}"));
            }
        }
        let _ = std::fs::remove_dir(self.dir.join("links"));
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if std::fs::remove_file(e.path()).is_ok() {
                    removed.push(format!("map {}", e.file_name().to_string_lossy()));
                }
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
        if let Some(parent) = self.dir.parent() {
            // Fails while another namespace's agent keeps its directory there.
            let _ = std::fs::remove_dir(parent);
        }
        removed
    }
}

/// This namespace's pin directory, checked and prepared for the object at `sizes` (`None`:
/// pinning off, or unusable — said once: the agent then runs unpinned), and the start time
/// of every cumulative series (a fresh start: now; see [`PinDir::prepare`]).
pub fn start(cfg: &PinningConfig, sizes: &super::Sizes) -> (Option<PinDir>, SystemTime) {
    let now = SystemTime::now();
    let unpinned = |e: &dyn std::fmt::Display| {
        warn!(error = %e, "running unpinned: a restart will lose the kernel's counts");
        (None, now)
    };
    let mut dir = match PinDir::open(cfg) {
        Ok(Some(dir)) => dir,
        Ok(None) => return (None, now),
        Err(e) => return unpinned(&e),
    };
    let overrides = sizes.overrides();
    let shapes = match layout::shapes(super::OBJECT, |n| overrides.get(n).copied()) {
        Ok(s) => s,
        Err(e) => return unpinned(&e),
    };
    match dir.prepare(&shapes) {
        Ok((found, started)) => {
            dir.adopted = found == Found::Adopted;
            (Some(dir), started)
        }
        Err(e) => unpinned(&e),
    }
}
