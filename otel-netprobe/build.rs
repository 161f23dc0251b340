//! Builds the eBPF object (`netprobe-ebpf`'s binaries, for the BPF target) with aya-build and
//! puts it in OUT_DIR, where `src/ebpf/mod.rs` embeds it with `include_bytes_aligned!`.
//!
//! The nightly toolchain is used when installed (for `-Z build-std=core`); otherwise the current
//! toolchain with `RUSTC_BOOTSTRAP=1`, which `make setup` arranges.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    // The fuzz targets (built with `--cfg fuzzing`, which cargo hands build scripts as
    // CARGO_CFG_FUZZING) never load the programs: empty objects spare their cold build the
    // nested build of the programs and of `core` for the BPF target (2 min here, under load).
    if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
        for name in ["netprobe", "netprobe-bench"] {
            std::fs::write(out.join(name), []).context("writing an empty eBPF object")?;
        }
        return Ok(());
    }
    let meta = std::process::Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let toolchain = if meta.lines().any(|l| l.starts_with("nightly")) {
        aya_build::Toolchain::Nightly
    } else {
        aya_build::Toolchain::Custom("stable")
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../netprobe-ebpf");
    let package = aya_build::Package {
        name: "netprobe-ebpf",
        root_dir: root,
        ..Default::default()
    };
    aya_build::build_ebpf([package], toolchain).context("building the eBPF programs")
}
