//! A memory cgroup with a limit, the way a pod's container has one, for programs that size
//! themselves by it (the Collector's `memory_limiter` with `limit_percentage`). Created under
//! this process's own memory cgroup on cgroup v1, or on cgroup v2 under the hierarchy's root,
//! with the memory controller enabled for it; removed on drop (also when the test fails).
//!
//! A program started through [`MemoryCgroup::command`] joins the cgroup before it execs. On
//! v2 it also gets its own cgroup namespace and `/sys/fs/cgroup` mounted from there, as in a
//! container: the Collector reads its limit from `/sys/fs/cgroup/memory.max`, the namespace's
//! root, and would find none (so the host's whole memory) from a cgroup of the host's tree.
//!
//! Included with `#[path]` by the test files that need it (no change to `common/mod.rs`).
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// A memory cgroup of ours; removed (once empty) on drop.
pub struct MemoryCgroup {
    dir: PathBuf,
    v2: bool,
    limit: u64,
}

/// What `/proc/self/cgroup` and `/proc/self/mountinfo` say about memory control here.
enum Layout {
    /// cgroup v1: the memory hierarchy's directory for this process.
    V1(PathBuf),
    /// cgroup v2: the hierarchy's mount point (its root, as this process sees it).
    V2(PathBuf),
}

/// The mount point and root of the mount whose filesystem type is `fs` (and, for v1, whose
/// super options name `memory`).
fn mount_of(fs: &str) -> Option<(PathBuf, String)> {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut right = right.split_whitespace();
        let (ty, _source, options) = (right.next()?, right.next()?, right.next()?);
        let memory = fs == "cgroup2" || options.split(',').any(|o| o == "memory");
        if ty != fs || !memory {
            return None;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        Some((PathBuf::from(fields.get(4)?), (*fields.get(3)?).to_owned()))
    })
}

fn layout() -> Layout {
    let own = fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let v1 = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    });
    if let Some(path) = v1 {
        let (mount, root) = mount_of("cgroup").expect("a v1 memory hierarchy is mounted");
        let rel = path.strip_prefix(root.as_str()).unwrap_or(path);
        return Layout::V1(mount.join(rel.trim_start_matches('/')));
    }
    let (mount, _) = mount_of("cgroup2")
        .expect("no memory controller: neither a v1 memory hierarchy nor cgroup2 is mounted");
    let controllers = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    assert!(
        controllers.split_whitespace().any(|c| c == "memory"),
        "cgroup v2 at {} offers no memory controller ({controllers:?})",
        mount.display()
    );
    Layout::V2(mount)
}

impl MemoryCgroup {
    /// A new cgroup named `name` (unique per test) limited to `limit` bytes of memory.
    pub fn new(name: &str, limit: u64) -> Self {
        let (parent, v2) = match layout() {
            Layout::V1(dir) => (dir, false),
            Layout::V2(root) => {
                // The root may enable controllers for its children however many processes it
                // holds; any other cgroup with processes may not (EBUSY), so a cgroup
                // namespace's root that holds processes cannot be used.
                let control = root.join("cgroup.subtree_control");
                let enabled = fs::read_to_string(&control).unwrap_or_default();
                if !enabled.split_whitespace().any(|c| c == "memory") {
                    fs::write(&control, "+memory").unwrap_or_else(|e| {
                        panic!(
                            "enable the memory controller in {} (needed for a memory limit on \
                             cgroup v2; a cgroup namespace root that holds processes refuses it): {e}",
                            control.display()
                        )
                    });
                }
                (root, true)
            }
        };
        let dir = parent.join(name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create cgroup {}: {e}", dir.display()));
        let cg = Self { dir, v2, limit };
        let file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        cg.write(file, &limit.to_string());
        if v2 && cg.dir.join("memory.swap.max").exists() {
            // Kubernetes runs pods without swap: the limit is the memory there is.
            cg.write("memory.swap.max", "0");
        }
        let read = fs::read_to_string(cg.dir.join(file)).expect("read the limit back");
        assert_eq!(
            read.trim(),
            limit.to_string(),
            "{file} of {}",
            cg.dir.display()
        );
        cg
    }

    fn write(&self, file: &str, value: &str) {
        let path = self.dir.join(file);
        fs::write(&path, value)
            .unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether it is a cgroup v2 one.
    pub fn is_v2(&self) -> bool {
        self.v2
    }

    /// Its memory limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// A command that runs `program ARGS` inside this cgroup: a shell writes its own pid into
    /// `cgroup.procs` and execs the program (on v2 through `unshare`, into a cgroup namespace
    /// of its own with `/sys/fs/cgroup` mounted from it), so the pid is the program's.
    pub fn command(&self, program: &Path) -> Command {
        let join = r#"echo $$ > "$0/cgroup.procs" || exit 125; "#;
        let exec = if self.v2 {
            r#"exec unshare --cgroup --mount --propagation private sh -c 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"' sh "$@""#
        } else {
            r#"exec "$@""#
        };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{join}{exec}"))
            .arg(&self.dir)
            .arg(program);
        cmd
    }

    /// The pids in it now.
    pub fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Whoever ran in it was stopped first; a process that is still exiting keeps the
        // cgroup busy for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for pid in self.pids() {
                // SAFETY: kill(2); the only processes in this cgroup are the ones we put there.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            match fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) if Instant::now() >= deadline => {
                    eprintln!("could not remove cgroup {}: {e}", self.dir.display());
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
