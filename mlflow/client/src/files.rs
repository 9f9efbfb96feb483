//! The files of a version folder, as the registry stores them.

use std::path::Path;

/// Every file under `folder` as a `/`-separated relative path, sorted; hidden files (editor
/// and OS droppings such as `.DS_Store`) are left out so they never become part of a version.
pub(crate) fn files_under(folder: &Path) -> std::io::Result<Vec<String>> {
    let mut files = Vec::new();
    // Folders still to read, with their path relative to `folder` ("" for `folder` itself).
    let mut pending = vec![(folder.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let relative = match prefix.as_str() {
                "" => name,
                prefix => format!("{prefix}/{name}"),
            };
            if entry.path().is_dir() {
                pending.push((entry.path(), relative));
            } else {
                files.push(relative);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nested_files_are_listed_sorted_without_hidden_ones() {
        let dir = std::env::temp_dir().join(format!("weir-client-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tokenizer")).unwrap();
        for file in [
            "weir.toml",
            "model.onnx",
            ".DS_Store",
            "tokenizer/vocab.txt",
        ] {
            std::fs::write(dir.join(file), "x").unwrap();
        }
        let files = super::files_under(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(files, ["model.onnx", "tokenizer/vocab.txt", "weir.toml"]);
        assert!(
            super::files_under(&dir).is_err(),
            "a missing folder is an error"
        );
    }
}
