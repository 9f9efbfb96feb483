//! The autoscaler's config file (`weir autoscale --config`), parsed and validated by
//! `weir_autoscaler::config::AutoscalerFile::parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_autoscaler::config::AutoscalerFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = AutoscalerFile::parse(text);
});
