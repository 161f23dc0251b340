//! Nothing to configure today; kept so link options for the BPF target have one obvious home.
//!
//! Tried and rejected: `--cpu-features=+allows-misaligned-mem-access` makes LLVM emit misaligned
//! *stack* accesses, which the verifier refuses ("misaligned stack access").
fn main() {}
