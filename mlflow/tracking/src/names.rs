//! Identifiers and the friendly run names MLflow users are used to (`brave-otter-512`).

use rand::Rng;

const ADJECTIVES: &[&str] = &[
    "able", "bold", "brave", "bright", "calm", "clever", "crisp", "eager", "fair", "fast",
    "gentle", "glad", "grand", "keen", "kind", "lively", "lucky", "merry", "neat", "nimble",
    "polite", "proud", "quick", "quiet", "rare", "sharp", "shy", "smart", "swift", "tidy", "warm",
    "wise",
];

const NOUNS: &[&str] = &[
    "ant", "bass", "bear", "crane", "deer", "dove", "eel", "elk", "finch", "fox", "frog", "gull",
    "hare", "hawk", "heron", "ibis", "lark", "lynx", "mole", "moth", "newt", "otter", "owl",
    "panda", "quail", "robin", "seal", "swan", "toad", "trout", "wasp", "wren",
];

pub fn run_name() -> String {
    let mut rng = rand::rng();
    format!(
        "{}-{}-{}",
        ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
        NOUNS[rng.random_range(0..NOUNS.len())],
        rng.random_range(0..1000)
    )
}

/// 32 lowercase hex digits, as MLflow's run ids.
pub fn hex_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}
