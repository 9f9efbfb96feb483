//! The data plane's randomness: a small, fast generator per thread (Xoshiro through rand's
//! `SmallRng`, seeded from the OS-seeded thread RNG). The decision rules take any
//! `&mut impl Rng`, so tests pass a seeded one and get the same draws every run; the hot path
//! passes this one, which needs no lock and no syscall.

use std::cell::RefCell;

use rand::rngs::SmallRng;
use rand::SeedableRng;

thread_local! {
    static FAST: RefCell<SmallRng> = RefCell::new(SmallRng::from_rng(&mut rand::rng()));
}

/// Runs `f` with this thread's generator.
pub(crate) fn with_fast_rng<T>(f: impl FnOnce(&mut SmallRng) -> T) -> T {
    FAST.with(|rng| f(&mut rng.borrow_mut()))
}
