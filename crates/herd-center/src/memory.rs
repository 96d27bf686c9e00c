//! Giving freed memory back to the system after the center has built a large catalog.
//!
//! Loading SPEC §8's catalog (100,000 threats × 20 products) parses about 300 MB of feeds into
//! millions of small allocations and frees them once the compact model is built. glibc's
//! allocator keeps such freed memory in its arenas, so without this the center would stay at
//! several GB resident for a model of about 100 MB. `malloc_trim` returns the free pages of
//! every arena; it costs a few milliseconds and is called only after a catalog is (re)built.
//!
//! The one `unsafe` of the center: a call into the C library with no pointer arguments and
//! no preconditions.

/// Returns freed memory to the system where the allocator keeps it (glibc), else nothing.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` takes a padding size, touches only the allocator's own state (under
    // its locks), and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
