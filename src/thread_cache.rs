//! A larger per-thread cache in glibc's `malloc`, set by starting weir again once.
//!
//! glibc keeps at most 7 freed blocks of each size per thread (its tcache); past that a free
//! goes back to the block's arena under the arena's lock. weir's hot path hands blocks from
//! thread to thread: a request is decoded on a tokio worker and dropped on the model's thread,
//! an answer is made on the model's thread and dropped on a worker. The freeing thread's cache
//! is then always full and nearly every free takes a lock. With 256 blocks per size, ten
//! alternating rounds of gRPC iris at 32 streams served a median 52,225 calls/s against
//! 42,223 with glibc's default, ahead in 8 rounds of 10 and never more server CPU per call
//! (benches/README.md). The cache stays bounded: only blocks of up to 1,032 bytes are cached,
//! so a thread holds at most about 8.8 MB of them, handed back when the thread ends.
//!
//! glibc reads the setting only from `GLIBC_TUNABLES` when a program starts, and has no call to
//! change it later, so weir executes itself once more with the setting added before it does
//! anything else. A `glibc.malloc.tcache_count` already in the environment is left alone: it is
//! the operator's choice (or weir's own, after the second start), which also means the second
//! start never starts a third.

use std::ffi::{OsStr, OsString};

/// The tunable weir adds.
const THREAD_CACHE: &str = "glibc.malloc.tcache_count=256";
const THREAD_CACHE_NAME: &str = "glibc.malloc.tcache_count=";

/// The `GLIBC_TUNABLES` to start again with, given the current one; `None` when the current
/// one already sets the cache's size.
fn tunables_with_thread_cache(current: Option<&OsStr>) -> Option<OsString> {
    let Some(current) = current.filter(|current| !current.is_empty()) else {
        return Some(THREAD_CACHE.into());
    };
    let sets_cache = current
        .to_string_lossy()
        .split(':')
        .any(|tunable| tunable.starts_with(THREAD_CACHE_NAME));
    if sets_cache {
        return None;
    }
    let mut tunables = current.to_owned();
    tunables.push(":");
    tunables.push(THREAD_CACHE);
    Some(tunables)
}

/// Starts this program again with the larger cache, unless the environment already sizes it.
/// Returns only when it does not need to, or could not (no `/proc/self/exe`): weir then runs on
/// with glibc's default cache, and the error says why.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn start_with_larger_cache() -> Result<(), std::io::Error> {
    use std::os::unix::process::CommandExt;

    let current = std::env::var_os("GLIBC_TUNABLES");
    let Some(tunables) = tunables_with_thread_cache(current.as_deref()) else {
        return Ok(());
    };
    let mut args = std::env::args_os();
    let program = args.next().unwrap_or_else(|| "weir".into());
    // `exec` returns only on failure; on success this process image is gone.
    Err(std::process::Command::new("/proc/self/exe")
        .arg0(program)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec())
}

/// Other C libraries and systems: nothing to set.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn start_with_larger_cache() -> Result<(), std::io::Error> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(current: Option<&str>) -> Option<String> {
        tunables_with_thread_cache(current.map(OsStr::new))
            .map(|tunables| tunables.to_string_lossy().into_owned())
    }

    #[test]
    fn the_cache_is_added_to_whatever_else_is_tuned() {
        assert_eq!(with(None).as_deref(), Some(THREAD_CACHE));
        assert_eq!(with(Some("")).as_deref(), Some(THREAD_CACHE));
        assert_eq!(
            with(Some("glibc.malloc.arena_max=2")).as_deref(),
            Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=256")
        );
    }

    #[test]
    fn a_cache_size_already_chosen_is_kept_so_weir_starts_again_at_most_once() {
        assert_eq!(with(Some("glibc.malloc.tcache_count=7")), None);
        assert_eq!(
            with(Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0")),
            None
        );
        assert_eq!(with(Some(THREAD_CACHE)), None);
        // A name that only ends like the tunable is another tunable.
        assert!(with(Some("x.glibc.malloc.tcache_count=7")).is_some());
    }
}
