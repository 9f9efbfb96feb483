//! MLflow's search filter and order-by language, shared by the registry and tracking search
//! endpoints, through `weir_mlflow_wire::{Filter, OrderBy}::parse`. A query string reaches the
//! parser as UTF-8 text, so other bytes are not fed to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_mlflow_wire::{Filter, OrderBy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Filter::parse(text);
    let _ = OrderBy::parse(text);
});
