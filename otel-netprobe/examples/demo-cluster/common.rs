//! The parts of the test suite's `tests/common/` that the real API server's harness needs:
//! its basics (`base.rs`: namespaces, unique names, deadlines), `backends.rs` (where `make
//! setup` put the tools) and the harness itself (`kubeapi/`). Included by path, so the demo
//! runs the tests' code, not a copy; the rest of `common/` is left out (it names the test
//! build's agent binary, `CARGO_BIN_EXE_*`, which examples do not get).
#![allow(dead_code, reason = "the demo uses a part of the tests' helpers")]

#[path = "../../tests/common/backends.rs"]
pub mod backends;
#[path = "../../tests/common/base.rs"]
mod base;
#[path = "../../tests/common/kubeapi/mod.rs"]
pub mod kubeapi;

pub use base::{Netns, enter, patient, require_root, unique, within};
