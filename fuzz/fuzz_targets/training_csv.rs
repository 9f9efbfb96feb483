//! The training CSV reader, through `weir_training::read_csv` (its public entry point reads a
//! path, so the input is written to a scratch file first), with the columns chosen three ways:
//! every column but the target deciding the task, listed features, and a forced task.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use weir_training::{read_csv, Columns, Task};

static PATH: OnceLock<PathBuf> = OnceLock::new();
static COLUMNS: OnceLock<Vec<Columns>> = OnceLock::new();

fn columns() -> Vec<Columns> {
    vec![
        Columns {
            target: "label".to_owned(),
            features: Vec::new(),
            task: None,
        },
        Columns {
            target: "label".to_owned(),
            features: vec!["b".to_owned(), "a".to_owned()],
            task: Some(Task::Classification),
        },
        Columns {
            target: "y".to_owned(),
            features: Vec::new(),
            task: Some(Task::Regression),
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let path = PATH.get_or_init(|| weir_fuzz::scratch_path("data.csv"));
    std::fs::write(path, data).expect("the scratch csv can be written");
    for columns in COLUMNS.get_or_init(columns) {
        let _ = read_csv(path, columns);
    }
});
