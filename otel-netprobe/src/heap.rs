//! How the agent's heap gives memory back to the system (glibc's malloc).
//!
//! Each read cycle allocates a few large, short-lived blocks: the decoded flows (about 15 MiB
//! at 100k flows), the series grouping, the families. By default glibc raises its mmap
//! threshold to the size of every large block freed (up to 32 MiB), so from the second cycle
//! on those blocks are carved from a thread's arena instead of mapped, and when freed they stay
//! resident. Measured with 100k live flows (`make bench`, `agent`): 137–148 MiB resident with
//! glibc's defaults, 107–108 MiB with the threshold fixed (the same binary, the threshold set
//! by `GLIBC_TUNABLES`). A fixed threshold maps every block above it and unmaps it when freed,
//! at the price of the page faults of mapping it again next cycle.

/// Blocks of at least this size are mapped on their own and returned when freed (glibc's
/// initial threshold, kept from rising).
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Fixes the mmap threshold at [`MMAP_THRESHOLD`] for the whole process. Call it early (it
/// changes how later allocations are placed); a no-op where the allocator is not glibc's.
pub fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning; any value is valid.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// Hands the heap's free pages back to the system (all arenas): after start-up, which frees
/// hundreds of thousands of small allocations (parsing BTF), and after each read cycle, whose
/// freed blocks below the threshold would otherwise stay resident.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
