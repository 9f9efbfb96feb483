//! Canary router: weighted version split, pinning, shadowing and progressive rollouts (not built yet; see issue 7).
