//! `make test`'s last line, from `scripts/test-summary.sh`: passed and failed tests counted
//! over every test binary, a binary that crashed before its summary counted as a failure, and
//! the exit status says whether anything failed.

use std::{io::Write, process::Command};

/// Runs the script on a `cargo test` log; returns its output and whether it succeeded.
fn summary(log: &str) -> (String, bool) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-summary.sh");
    let mut child = Command::new("bash")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("bash");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(log.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("summary");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.success(),
    )
}

const OK: &str = "     Running unittests src/lib.rs (target/release/deps/otel_netprobe-1)\n\
running 2 tests\ntest a ... ok\ntest b ... ok\n\n\
test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\n";

const FAILED: &str = "     Running tests/cli.rs (target/release/deps/cli-2)\n\
running 3 tests\ntest c ... ok\ntest d ... FAILED\ntest e ... ok\n\n\
test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s\n\n\
error: test failed, to rerun pass `-p otel-netprobe --test cli`\n";

const CRASHED: &str = "     Running tests/churn.rs (target/release/deps/churn-3)\n\
running 1 test\n\
error: test failed, to rerun pass `-p otel-netprobe --test churn`\n\n\
Caused by:\n  process didn't exit successfully: `churn-3` (signal: 6, SIGABRT: process abort signal)\n";

#[test]
fn all_passed() {
    assert_eq!(summary(OK), ("tests: 2 passed, 0 failed\n".into(), true));
}

#[test]
fn a_failed_test_is_counted_and_fails_the_run() {
    let (text, ok) = summary(&format!("{OK}{FAILED}"));
    assert_eq!(text, "tests: 4 passed, 1 failed\n");
    assert!(!ok);
}

#[test]
fn a_binary_that_crashed_counts_as_failed_wherever_it_is() {
    for log in [format!("{CRASHED}{OK}"), format!("{OK}{CRASHED}")] {
        let (text, ok) = summary(&log);
        assert_eq!(
            text,
            "tests: 2 passed, 1 failed\n  crashed before its summary: tests/churn.rs (target/release/deps/churn-3)\n"
        );
        assert!(!ok);
    }
}

#[test]
fn a_build_failure_is_said() {
    let (text, ok) =
        summary("error: could not compile `otel-netprobe` (lib) due to 1 previous error\n");
    assert_eq!(
        text,
        "tests: 0 passed, 0 failed\n  the build failed: see the errors above\n"
    );
    assert!(!ok);
}
