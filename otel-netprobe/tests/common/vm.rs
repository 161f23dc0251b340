//! The kernel matrix: the lab suite, run again inside a QEMU VM of an older kernel.
//!
//! The VM runs the very test binary that runs on the host (its `current_exe`), with the agent
//! binary beside it, so the lab code the two run cannot drift. `scripts/vm-run.sh` builds the
//! initramfs and boots Debian's kernel package that `make setup` fetched
//! (`scripts/kernels.sh`); this module checks what the guest's libtest reported.
//!
//! The arm64 lines (`arm64-<line>`, under `qemu-system-aarch64`) run the same lab cross-built for
//! aarch64 by `scripts/cross-arm64.sh` (make test's set-up runs it): the host's binary lists
//! the tests the guest must pass, the cross-built one runs them.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

/// One VM at a time: each takes both of this machine's cores under software emulation.
static ONE_VM: Mutex<()> = Mutex::new(());

/// The module of the tests that boot VMs: the guest runs every test but these.
const MATRIX: &str = "kernel_matrix::";

/// What the guest runs under, against a fast machine: emulation is about ten times slower.
const GUEST_PATIENCE: u32 = 10;

/// The Rust target of the arm64 lines' binaries.
const ARM64_TARGET: &str = "aarch64-unknown-linux-gnu";

/// Runs this test binary's lab tests (all but the `kernel_matrix` ones, one at a time) inside a VM
/// of kernel `line`, and asserts that every one of them ran and passed there. An `arm64-` line
/// runs the aarch64 build of the lab and the agent instead (see [`arm64_build`]).
pub fn run_lab(line: &str, timeout: Duration) {
    super::require_root();
    let _one = ONE_VM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let host_exe = std::env::current_exe().expect("test binary");
    let (exe, agent) = if line.starts_with("arm64-") {
        arm64_build(&host_exe)
    } else {
        (
            host_exe.clone(),
            PathBuf::from(env!("CARGO_BIN_EXE_otel-netprobe")),
        )
    };
    let name = exe.file_name().unwrap().to_string_lossy().into_owned();
    let expected = lab_tests(&host_exe);
    assert!(!expected.is_empty(), "no lab tests listed by {name}");
    let work = std::env::temp_dir().join(format!("netprobe-vm-{line}-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/vm-run.sh");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg(line)
        .arg(&work)
        .arg(timeout.as_secs().to_string())
        .arg(&exe)
        .arg(&agent)
        .arg("--")
        .args([
            "env",
            "NETPROBE_AGENT_BIN=/payload/otel-netprobe",
            &format!("NETPROBE_TEST_PATIENCE={GUEST_PATIENCE}"),
            "RUST_BACKTRACE=1",
            &name,
            "--skip",
            MATRIX,
            "--test-threads=1",
        ])
        .output()
        .expect("running scripts/vm-run.sh");
    let took = started.elapsed();
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let report = Report::parse(&console);
    // Written past libtest's capture, so `make test` shows every kernel's time and result.
    let _ = writeln!(
        std::io::stderr(),
        "kernel matrix: {line} ({}): {} passed, {} failed of {} in {:.0} s; {}",
        report.kernel,
        report.passed.len(),
        report.failed.len(),
        expected.len(),
        took.as_secs_f64(),
        report.verified
    );
    let detail = || {
        format!(
            "VM exit {:?}; console log in {}; stderr: {}\n{}",
            out.status.code(),
            work.join("console.log").display(),
            String::from_utf8_lossy(&out.stderr),
            tail(&console, 120)
        )
    };
    assert!(
        report.failed.is_empty(),
        "on kernel {line}, failed: {:?}\n{}",
        report.failed,
        detail()
    );
    let mut passed = report.passed.clone();
    passed.sort();
    assert_eq!(
        passed,
        expected,
        "on kernel {line}, not every lab test ran and passed\n{}",
        detail()
    );
    assert!(out.status.success(), "on kernel {line}: {}", detail());
    let _ = std::fs::remove_dir_all(&work);
}

/// The aarch64 lab test binary and agent that `scripts/cross-arm64.sh` left beside this build
/// (`<target dir>/aarch64-unknown-linux-gnu/release/{lab,otel-netprobe}`); fails loudly when
/// either is missing, as on a machine where the cross-build did not run.
fn arm64_build(host_exe: &Path) -> (PathBuf, PathBuf) {
    // <target dir>/release/deps/lab-<hash>
    let target_dir = host_exe
        .ancestors()
        .nth(3)
        .expect("the test binary lives in <target dir>/release/deps");
    let dir = target_dir.join(ARM64_TARGET).join("release");
    let (lab, agent) = (dir.join("lab"), dir.join("otel-netprobe"));
    for f in [&lab, &agent] {
        assert!(
            f.is_file(),
            "{} is missing: the arm64 lines need the aarch64 build (bash scripts/cross-arm64.sh, \
             which make test runs)",
            f.display()
        );
    }
    (lab, agent)
}

/// The lab tests of the binary `exe`: every test but the `kernel_matrix` ones, sorted.
fn lab_tests(exe: &Path) -> Vec<String> {
    let out = Command::new(exe)
        .args(["--list", "--skip", MATRIX])
        .output()
        .expect("listing tests");
    let mut tests: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_owned)
        .collect();
    tests.sort();
    tests
}

/// What the guest's console says.
struct Report {
    kernel: String,
    /// The verifier's instruction counts, as the lab's verifier test printed them.
    verified: String,
    passed: Vec<String>,
    failed: Vec<String>,
}

impl Report {
    fn parse(console: &str) -> Self {
        let mut r = Self {
            kernel: String::from("?"),
            verified: String::from("verified instructions: not reported"),
            passed: Vec::new(),
            failed: Vec::new(),
        };
        // A test that writes past libtest's capture splits its line: `test NAME ... ` and what
        // it wrote, then its result on a line of its own.
        let mut pending: Option<String> = None;
        for line in console.lines() {
            // The firmware's escape codes may precede it on its line.
            if let Some((_, k)) = line.split_once("netprobe-vm: kernel ") {
                k.split(',').next().unwrap_or(k).clone_into(&mut r.kernel);
                continue;
            }
            if let Some(at) = line.find("verified instructions: ") {
                line[at..].clone_into(&mut r.verified);
            }
            if let Some(rest) = line.strip_prefix("test ") {
                if let Some(name) = rest.strip_suffix(" ... ok") {
                    r.passed.push(name.to_owned());
                } else if let Some(name) = rest.strip_suffix(" ... FAILED") {
                    r.failed.push(name.to_owned());
                } else if let Some((name, _)) = rest.split_once(" ... ") {
                    pending = Some(name.to_owned());
                }
            } else if let Some(name) = pending.take() {
                match line.trim() {
                    "ok" => r.passed.push(name),
                    "FAILED" => r.failed.push(name),
                    _ => pending = Some(name),
                }
            }
        }
        r
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
