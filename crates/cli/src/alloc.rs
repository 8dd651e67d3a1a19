//! The global allocator: jemalloc instead of glibc's malloc (see
//! docs/ARCHITECTURE.md, "Decisions"), and its purge, which the server
//! calls once connections settle after a burst.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Returns every arena's unused dirty pages to the system now instead of
/// over jemalloc's ten-second decay: `arena.<MALLCTL_ARENAS_ALL>.purge`.
/// Returns whether jemalloc accepted the request.
#[allow(unsafe_code)]
pub fn purge() -> bool {
    /// 4096 is `MALLCTL_ARENAS_ALL`: every arena.
    const NAME: &[u8] = b"arena.4096.purge\0";
    let none = std::ptr::null_mut();
    // SAFETY: NAME is NUL-terminated, and purge neither reads nor writes a
    // value, so every value pointer is null and the new length 0.
    unsafe { tikv_jemalloc_sys::mallctl(NAME.as_ptr().cast(), none, none.cast(), none, 0) == 0 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn purge_is_accepted() {
        let garbage: Vec<Vec<u8>> = (0..1000).map(|_| vec![1; 1000]).collect();
        drop(garbage);
        assert!(super::purge());
    }
}
