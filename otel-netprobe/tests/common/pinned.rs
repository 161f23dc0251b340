//! What of ours the kernel holds, seen from outside the agent: a private bpffs for the pins
//! (the machine's /sys/fs/bpf is never touched) with the pinned links in it, the XDP program
//! on an interface, and our TC programs by both attach mechanisms.

use std::{fs, path::PathBuf, process::Command};

use aya::programs::{SchedClassifier, TcAttachType};

use super::{Netns, unique};

/// A private bpffs instance mounted on a temporary directory, unmounted on drop.
pub struct Bpffs(pub PathBuf);

impl Bpffs {
    /// Mounts a fresh bpffs instance (root only).
    pub fn mount() -> Self {
        super::require_root();
        let dir = std::env::temp_dir().join(unique("bpffs"));
        fs::create_dir_all(&dir).expect("bpffs mount point");
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(ok.success(), "mount -t bpf bpf {}", dir.display());
        Self(dir)
    }

    /// The agents' namespace directories in it (the kernel's own `*.debug` iterators aside).
    pub fn netns_dirs(&self) -> Vec<PathBuf> {
        fs::read_dir(&self.0)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("netns-"))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every pinned link: file name → the kernel's link id.
    pub fn link_ids(&self) -> Vec<(String, u32)> {
        let mut ids = Vec::new();
        for dir in self.netns_dirs() {
            for e in fs::read_dir(dir.join("links"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let link =
                    aya::programs::links::PinnedLink::from_pin(e.path()).expect("pinned link");
                let fd = aya::programs::links::FdLink::from(link);
                let id = fd.info().expect("link info").id();
                ids.push((e.file_name().to_string_lossy().into_owned(), id));
            }
        }
        ids.sort();
        ids
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = fs::remove_dir(&self.0);
    }
}

/// The names of our TC programs that the kernel has attached to `ifname` in `ns`, by both
/// mechanisms: TCX links (queried with BPF_PROG_QUERY; kernels before 6.6 refuse the query)
/// and cls_bpf filters on a clsact qdisc (as `tc` lists them).
pub fn attached_tc(ns: &Netns, ifname: &str) -> (Vec<String>, Vec<String>) {
    let name = ifname.to_owned();
    let tcx = ns.run(move || {
        let mut names = Vec::new();
        for dir in [TcAttachType::Ingress, TcAttachType::Egress] {
            if let Ok((_, progs)) = SchedClassifier::query_tcx(&name, dir) {
                names.extend(
                    progs
                        .iter()
                        .filter_map(|p| p.name_as_str().map(str::to_owned)),
                );
            }
        }
        names
    });
    let mut clsact = Vec::new();
    for dir in ["ingress", "egress"] {
        let out = Command::new("tc")
            .args(["-n", &ns.name, "filter", "show", "dev", ifname, dir])
            .output()
            .expect("tc");
        // One filter per line; `tc` names its program twice (as attached, and the kernel's).
        let text = String::from_utf8_lossy(&out.stdout);
        clsact.extend(text.lines().filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("netprobe_"))
                .map(|w| w.split(':').next().unwrap_or(w).to_owned())
        }));
    }
    // The kernel keeps 15 bytes of a program's name; `tc` shows the name it was attached with.
    let ours = |v: Vec<String>| {
        v.into_iter()
            .filter(|n| n.starts_with("netprobe"))
            .map(|n| n.chars().take(15).collect())
            .collect()
    };
    (ours(tcx), ours(clsact))
}

/// Whether an XDP program is attached to `ifname` in `ns`.
pub fn has_xdp(ns: &Netns, ifname: &str) -> bool {
    ns.ip(&format!("-d link show dev {ifname}"))
        .contains("prog/xdp")
}

pub const VIRTUAL: [&str; 4] = ["vethpod0", "vethpod1", "vethpod2", "eth0"];
