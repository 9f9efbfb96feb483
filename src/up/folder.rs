//! The folder `weir up` keeps its state in (`--dir`, default `weir-up`): the registry's
//! database and artifacts, the generated routes and autoscaler files, the router's saved
//! weights and the replicas' folders.
//!
//! A demo run starts afresh (the previous run's registry and canary weights would otherwise
//! come back unasked) unless `--resume`; a run that fails removes what it made, so a refusal
//! never leaves a half-made folder behind. Only the entries `weir up` writes are ever removed.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// What `weir up` writes in its folder (`weir.toml` only with `--demo`: otherwise the stack
/// file is the user's and may well live here).
const STATE: &[&str] = &[
    "registry.db",
    "registry.db-wal",
    "registry.db-shm",
    "registry.db-journal",
    "artifacts",
    "replicas",
    "routes.toml",
    "routes.toml.state.json",
    "autoscaler.toml",
    "demo-models",
];

pub struct Folder {
    path: PathBuf,
    /// The folder did not exist before this run.
    created: bool,
    /// The run writes (and may remove) `weir.toml`.
    demo: bool,
    /// A previous run's registry is being reused.
    resumed: bool,
}

impl Folder {
    /// Creates `dir` (removing a previous run's state first when `fresh`). `demo` runs own the
    /// folder's `weir.toml`.
    pub fn prepare(dir: &Path, fresh: bool, demo: bool) -> anyhow::Result<Folder> {
        let existed = match std::fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => true,
            Ok(_) => anyhow::bail!(
                "{} exists and is not a folder; choose another --dir",
                dir.display()
            ),
            Err(_) => false,
        };
        if existed && fresh {
            remove_state(dir, demo)?;
        }
        let had_registry = dir.join("registry.db").is_file();
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let folder = |path: PathBuf| Folder {
            path,
            created: !existed,
            demo,
            resumed: had_registry,
        };
        match dir.canonicalize() {
            Ok(path) => Ok(folder(path)),
            Err(err) => {
                folder(dir.to_owned()).remove_what_this_run_made();
                Err(err).with_context(|| format!("cannot resolve {}", dir.display()))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a previous run's registry is in use (only without a fresh start).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// After a failure: the whole folder when this run created it; otherwise the state it wrote,
    /// unless that state is a previous run's being resumed.
    pub fn remove_what_this_run_made(&self) {
        let outcome = if self.created {
            std::fs::remove_dir_all(&self.path).map_err(anyhow::Error::from)
        } else if self.resumed {
            Ok(())
        } else {
            remove_state(&self.path, self.demo)
        };
        if let Err(err) = outcome {
            tracing::warn!(dir = %self.path.display(), error = %err, "cannot remove what this run made");
        }
    }
}

fn remove_state(dir: &Path, demo: bool) -> anyhow::Result<()> {
    let stack_file = demo.then_some("weir.toml");
    for name in STATE.iter().copied().chain(stack_file) {
        let path = dir.join(name);
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => continue,
        };
        removed.with_context(|| format!("cannot remove the previous run's {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-up-folder-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn fill(dir: &Path) {
        std::fs::create_dir_all(dir.join("artifacts/x")).unwrap();
        for file in [
            "registry.db",
            "routes.toml",
            "routes.toml.state.json",
            "weir.toml",
            "mine.txt",
        ] {
            std::fs::write(dir.join(file), "x").unwrap();
        }
    }

    #[test]
    fn a_fresh_start_removes_only_what_weir_up_writes() {
        let dir = scratch("fresh");
        fill(&dir);
        let folder = Folder::prepare(&dir, true, true).unwrap();
        assert!(!folder.resumed());
        assert!(!dir.join("registry.db").exists() && !dir.join("artifacts").exists());
        assert!(
            !dir.join("routes.toml.state.json").exists(),
            "old canary weights are gone"
        );
        assert!(!dir.join("weir.toml").exists());
        assert!(
            dir.join("mine.txt").exists(),
            "a file weir up did not write stays"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn resuming_keeps_the_state_even_after_a_failure() {
        let dir = scratch("resume");
        fill(&dir);
        let folder = Folder::prepare(&dir, false, true).unwrap();
        assert!(folder.resumed());
        folder.remove_what_this_run_made();
        assert!(dir.join("registry.db").exists() && dir.join("routes.toml.state.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_run_removes_the_folder_it_created_or_the_state_it_wrote() {
        let dir = scratch("created");
        let folder = Folder::prepare(&dir, true, true).unwrap();
        fill(&dir);
        folder.remove_what_this_run_made();
        assert!(!dir.exists(), "the folder this run created is gone");

        let dir = scratch("existing");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("weir.toml"), "the user's stack").unwrap();
        let folder = Folder::prepare(&dir, false, false).unwrap();
        fill(&dir);
        std::fs::write(dir.join("weir.toml"), "the user's stack").unwrap();
        std::fs::remove_file(dir.join("registry.db")).unwrap();
        let folder = Folder {
            resumed: false,
            ..folder
        };
        folder.remove_what_this_run_made();
        assert!(!dir.join("routes.toml").exists() && !dir.join("artifacts").exists());
        assert_eq!(
            std::fs::read_to_string(dir.join("weir.toml")).unwrap(),
            "the user's stack",
            "without --demo the stack file is the user's"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_in_the_way_is_refused() {
        let dir = scratch("file");
        std::fs::write(&dir, "x").unwrap();
        let err = Folder::prepare(&dir, true, true).err().unwrap().to_string();
        assert!(err.contains("is not a folder"), "{err}");
        let _ = std::fs::remove_file(&dir);
    }
}
