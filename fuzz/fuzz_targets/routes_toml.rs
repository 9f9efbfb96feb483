//! The router's routes file (`weir route --config`), parsed and validated by
//! `weir_router::RoutesFile::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_router::RoutesFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = RoutesFile::parse(text);
});
