//! Whether `weir serve` can serve a version's files, decided the way the runtime picks a backend
//! for a version folder (`weir_models::repository::load_version`): `model.onnx` (ONNX Runtime),
//! `model.safetensors` + `weir.toml` (a native network), or `model.safetensors` + `config.json` +
//! `tokenizer.json` (a BERT-family encoder), each at the top of the version.
//!
//! MLflow registers whatever a flavour logged (`mlflow.sklearn.log_model` writes `MLmodel` and
//! `model.pkl`), so a version can be registered, approved and aliased and only fail when a
//! server downloads it. The registry says so at registration (a tag and a log line) and refuses
//! to approve it or to point a protected alias at it, naming what would make it servable.

/// Version tag set to `false` on a version weir cannot serve (absent when it can).
pub const TAG: &str = "weir.servable";
/// Version tag holding why a version is not servable and what would make it so.
pub const REASON_TAG: &str = "weir.servable_reason";

/// The backend a version folder would load with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Onnx,
    Native,
    Encoder,
}

/// The backend `load_version` would pick for a version holding these files (paths relative to
/// the version, `/`-separated), in its order; `None` when it would find nothing to load.
pub fn format<S: AsRef<str>>(files: &[S]) -> Option<Format> {
    let has = |name: &str| files.iter().any(|f| f.as_ref() == name);
    if has("model.onnx") {
        Some(Format::Onnx)
    } else if has("model.safetensors") && has("weir.toml") {
        Some(Format::Native)
    } else if has("model.safetensors") && has("config.json") && has("tokenizer.json") {
        Some(Format::Encoder)
    } else {
        None
    }
}

/// How many of a version's files an explanation names before "…".
const NAMED_FILES: usize = 6;

/// Why a version with these files cannot be served, with what would make it servable; `None`
/// when it can. `source` is the version's source, for the message.
pub fn unservable_reason<S: AsRef<str>>(files: &[S], source: &str) -> Option<String> {
    if format(files).is_some() {
        return None;
    }
    let fix = fix_for(files);
    if files.is_empty() {
        return Some(format!(
            "weir serve cannot serve it: no files were found at its source '{source}' in this \
             registry's artifact store (a source elsewhere cannot be downloaded or verified); \
             {fix}"
        ));
    }
    let mut named: Vec<&str> = files.iter().map(AsRef::as_ref).take(NAMED_FILES).collect();
    if files.len() > NAMED_FILES {
        named.push("…");
    }
    Some(format!(
        "weir serve cannot serve it: it holds {} but no model.onnx, no model.safetensors with \
         weir.toml and no Hugging Face folder (model.safetensors, config.json, tokenizer.json); \
         {fix}",
        named.join(", ")
    ))
}

/// What to do, by what was logged: a pickle (scikit-learn's flavour) wants skl2onnx.
fn fix_for<S: AsRef<str>>(files: &[S]) -> &'static str {
    let pickled = files.iter().any(|f| {
        let f = f.as_ref();
        f.ends_with(".pkl") || f.ends_with(".pickle") || f.ends_with(".joblib")
    });
    if pickled {
        "export it to ONNX (for scikit-learn: skl2onnx's to_onnx, then mlflow.onnx.log_model, \
         which writes model.onnx) or save model.safetensors with weir.toml (weir train), and \
         register that"
    } else {
        "register a folder with model.onnx (e.g. mlflow.onnx.log_model, or skl2onnx for \
         scikit-learn) or model.safetensors with weir.toml (weir train)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_backends_are_servable_in_its_order() {
        assert_eq!(format(&["MLmodel", "model.onnx"]), Some(Format::Onnx));
        assert_eq!(
            format(&["model.safetensors", "weir.toml"]),
            Some(Format::Native)
        );
        assert_eq!(
            format(&["config.json", "model.safetensors", "tokenizer.json"]),
            Some(Format::Encoder)
        );
        assert_eq!(unservable_reason(&["model.onnx"], "s"), None);
    }

    #[test]
    fn an_sklearn_folder_is_not_servable_and_the_reason_names_skl2onnx() {
        let files = [
            "MLmodel",
            "conda.yaml",
            "model.pkl",
            "python_env.yaml",
            "requirements.txt",
        ];
        assert_eq!(format(&files), None);
        let reason = unservable_reason(&files, "models:/m-1").unwrap();
        assert!(reason.contains("model.pkl"), "{reason}");
        assert!(reason.contains("skl2onnx"), "{reason}");
        assert!(reason.contains("model.onnx"), "{reason}");
    }

    #[test]
    fn half_a_backend_or_a_nested_model_is_not_servable() {
        assert_eq!(format(&["model.safetensors"]), None);
        assert_eq!(format(&["model.safetensors", "config.json"]), None);
        // The runtime looks at the top of the version folder only.
        assert_eq!(format(&["onnx/model.onnx"]), None);
        let none: [&str; 0] = [];
        let reason = unservable_reason(&none, "s3://bucket/a").unwrap();
        assert!(reason.contains("s3://bucket/a"), "{reason}");
        let many: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
        let reason = unservable_reason(&many, "x").unwrap();
        assert!(
            reason.contains("f5, …") && !reason.contains("f6"),
            "{reason}"
        );
    }
}
