//! A model repository folder's `config.toml`, through `weir_models::repository::read_model`
//! (the only public entry point: it reads the folder, so the input is written to a scratch
//! repository holding one model with versions 1 and 2).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weir_models::repository::read_model;

static ROOT: OnceLock<PathBuf> = OnceLock::new();

fn root() -> &'static PathBuf {
    ROOT.get_or_init(|| {
        let root = weir_fuzz::scratch_path("repository");
        for version in ["1", "2"] {
            std::fs::create_dir_all(root.join("m").join(version))
                .expect("the scratch repository can be created");
        }
        root
    })
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    std::fs::write(root.join("m").join("config.toml"), data)
        .expect("the scratch config can be written");
    let _ = read_model(root, "m");
});
