//! The weight split on a seeded RNG: deterministic draws, so the bounds below can be tight.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::config::RoutesFile;

fn table(weights: (u32, u32)) -> RouteTable {
    let text = format!(
        r#"[[route]]
        model = "m"
        [[route.backend]]
        version = "1"
        endpoints = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
        weight = {}
        [[route.backend]]
        version = "2"
        endpoints = ["http://127.0.0.1:3"]
        weight = {}"#,
        weights.0, weights.1
    );
    let file = RoutesFile::parse(&text).unwrap();
    RouteTable::build(&file.route, file.settings, None)
}

/// A route with one backend per weight (versions "0", "1", …).
fn route_with(weights: &[u32]) -> Route {
    let backends = weights
        .iter()
        .enumerate()
        .map(|(index, weight)| Backend {
            version: index.to_string(),
            registry_version: None,
            weight: *weight,
            pool: Pool::new(&[]),
            stats: Arc::default(),
        })
        .collect();
    Route::new("m".to_owned(), None, backends, None, None)
}

#[test]
fn weights_split_and_sticky_keys_stay() {
    let mut rng = StdRng::seed_from_u64(18);
    let table = table((70, 30));
    let route = &table.routes["m"];
    let canary = (0..10_000)
        .filter(|_| route.choose(None, &mut rng).unwrap().version == "2")
        .count();
    assert!((2_990..=3_010).contains(&canary), "{canary}");
    for key in ["alice", "bob", "carol"] {
        let first = route
            .choose(Some(key.as_bytes()), &mut rng)
            .unwrap()
            .version
            .clone();
        assert!((0..50).all(|_| {
            route
                .choose(Some(key.as_bytes()), &mut rng)
                .unwrap()
                .version
                == first
        }));
    }
    let all_stable = table.with_weights("m", &[("1".into(), 100), ("2".into(), 0)], None);
    assert!((0..1000).all(|_| {
        all_stable.routes["m"]
            .choose(None, &mut rng)
            .unwrap()
            .version
            == "1"
    }));
}

#[test]
fn weight_changes_keep_replica_state() {
    let table = table((90, 10));
    let endpoint = table.routes["m"].backends[0].pool.endpoints()[0].clone();
    let _busy = endpoint.start();
    let changed = table.with_weights("m", &[("2".into(), 50), ("1".into(), 50)], None);
    let route = &changed.routes["m"];
    assert_eq!(route.backends[0].version, "2");
    assert_eq!(
        route.backend("1").unwrap().pool.endpoints()[0].inflight(),
        1
    );
}

#[test]
fn no_weight_means_no_choice() {
    let mut rng = StdRng::seed_from_u64(0);
    assert!(route_with(&[0, 0]).choose(None, &mut rng).is_none());
    assert!(route_with(&[]).choose(Some(b"alice"), &mut rng).is_none());
}

/// 1 to 5 backends with weights adding up to 100 (some of them 0).
fn weights() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::vec(0u32..=100, 0..4).prop_map(|cuts| {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut edges = vec![0];
        edges.extend(cuts);
        edges.push(100);
        edges.windows(2).map(|w| w[1] - w[0]).collect()
    })
}

proptest! {
    /// Over 10,000 unkeyed requests each version gets its weight's share within 10 requests
    /// (0.1 point), a version at 0 gets none, and the same seed gives the same sequence.
    #[test]
    fn the_split_follows_the_weights(weights in weights(), seed in any::<u64>()) {
        const DRAWS: usize = 10_000;
        let route = route_with(&weights);
        let twin = route_with(&weights);
        let (mut rng, mut twin_rng) = (StdRng::seed_from_u64(seed), StdRng::seed_from_u64(seed));
        let mut counts = vec![0usize; weights.len()];
        for _ in 0..DRAWS {
            let chosen = route.choose(None, &mut rng).unwrap();
            let again = twin.choose(None, &mut twin_rng).unwrap();
            prop_assert_eq!(&chosen.version, &again.version, "deterministic given the seed");
            counts[chosen.version.parse::<usize>().unwrap()] += 1;
        }
        for (count, weight) in counts.iter().zip(&weights) {
            let expected = DRAWS * *weight as usize / 100;
            prop_assert!(count.abs_diff(expected) <= 10, "{:?} for {:?}", counts, weights);
            if *weight == 0 {
                prop_assert_eq!(*count, 0);
            }
        }
    }

    /// A sticky key keeps its version whatever the RNG does, and lands on a version with
    /// weight.
    #[test]
    fn a_sticky_key_ignores_the_rng(
        weights in weights(), key in proptest::collection::vec(any::<u8>(), 0..32), seed in any::<u64>()
    ) {
        let route = route_with(&weights);
        let mut rng = StdRng::seed_from_u64(seed);
        let first = route.choose(Some(&key), &mut rng).unwrap().version.clone();
        prop_assert!(weights[first.parse::<usize>().unwrap()] > 0);
        for _ in 0..20 {
            route.choose(None, &mut rng);
            prop_assert_eq!(&route.choose(Some(&key), &mut rng).unwrap().version, &first);
        }
    }

    #[test]
    fn a_shadow_copy_follows_its_percentage(percent in 0u32..=100, seed in any::<u64>()) {
        let mut route = route_with(&[100]);
        route.shadow = Some(Shadow { percent, pool: Pool::new(&[]), stats: Arc::default() });
        let mut rng = StdRng::seed_from_u64(seed);
        let copies = (0..4_000).filter(|_| route.shadow_for_this_request(&mut rng).is_some()).count();
        // Independent draws: within 5σ of the binomial (σ ≤ 32 at 4,000 draws).
        let expected = 4_000 * percent as usize / 100;
        prop_assert!(copies.abs_diff(expected) <= 160, "{} for {}%", copies, percent);
        if percent == 0 { prop_assert_eq!(copies, 0); }
        if percent == 100 { prop_assert_eq!(copies, 4_000); }
    }
}
