//! Finding and loading the ONNX Runtime shared library.
//!
//! weir does not link ONNX Runtime; it loads `libonnxruntime.so` at run time (`ort`'s
//! `load-dynamic`). Left to itself `ort` panics when the library is missing, so weir looks for
//! it first and, when it is not there, says how to install it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::backend::BackendError;

/// The process's one ONNX Runtime environment (ONNX Runtime allows only one).
pub fn environment() -> Result<&'static ort::environment::Environment, BackendError> {
    static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| {
            let path = find_library()?;
            tracing::info!(library = %path.display(), "loading ONNX Runtime");
            ort::init_from(&path)
                .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?
                .with_name("weir")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))
        })
        .as_ref()
        .map_err(|message| BackendError::RuntimeUnavailable(message.clone()))
}

/// Where the ONNX Runtime library is: `ORT_DYLIB_PATH` (when set and not empty), then a project venv (`$VIRTUAL_ENV`,
/// `./.venv`, or a `.venv` beside any folder above the weir executable), then the system's
/// library folders.
pub fn find_library() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "ORT_DYLIB_PATH points at {}, which is not a file",
                path.display()
            ))
        };
    }
    let mut venvs: Vec<PathBuf> = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        venvs.push(PathBuf::from(venv));
    }
    if let Ok(cwd) = std::env::current_dir() {
        venvs.push(cwd.join(".venv"));
    }
    if let Ok(exe) = std::env::current_exe() {
        venvs.extend(exe.ancestors().skip(1).map(|dir| dir.join(".venv")));
    }
    for venv in &venvs {
        if let Some(found) = in_venv(venv) {
            return Ok(found);
        }
    }
    for dir in [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
    ] {
        if let Some(found) = newest_library_in(Path::new(dir)) {
            return Ok(found);
        }
    }
    Err(concat!(
        "ONNX Runtime was not found. Install it into the project's venv with ",
        "`python3 -m venv .venv && .venv/bin/pip install onnxruntime` (or run `make setup`), ",
        "or set ORT_DYLIB_PATH to a libonnxruntime.so.1.x file"
    )
    .to_owned())
}

fn in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let pythons = std::fs::read_dir(&lib).ok()?;
    pythons
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python"))
        .find_map(|entry| newest_library_in(&entry.path().join("site-packages/onnxruntime/capi")))
}

/// The `libonnxruntime.so*` in `dir` with the longest (most specific) name; the wheel ships only
/// `libonnxruntime.so.1.X.Y`, with no plain `.so` link.
fn newest_library_in(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("libonnxruntime.so")
        })
        .map(|entry| entry.path())
        .max_by_key(|path| path.as_os_str().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_found_in_a_venv_layout() {
        let venv = std::env::temp_dir().join(format!("weir-venv-{}", std::process::id()));
        let capi = venv.join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        assert_eq!(in_venv(&venv), None);
        std::fs::write(capi.join("libonnxruntime.so.1.32.0"), b"").unwrap();
        std::fs::write(capi.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        assert_eq!(in_venv(&venv), Some(capi.join("libonnxruntime.so.1.32.0")));
        std::fs::remove_dir_all(venv).unwrap();
    }
}
