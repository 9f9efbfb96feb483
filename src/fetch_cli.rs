//! `weir fetch models:/NAME@ALIAS DIR`: one approved, verified registry version written to a
//! folder, for servers that do not speak to the registry themselves (a KServe storage
//! initializer, an init container). The refusals are the runtime's own (`weir_runtime::registry`
//! resolves, refuses and verifies): a version `weir serve --registry` would not serve is not
//! fetched either.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use weir_runtime::registry::{FetchedFile, RegistryModel, RegistrySource, RegistrySync};

use crate::models_cli::{read_token_file, RegistryAddress};
use crate::output::{table, Output};

#[derive(clap::Args)]
pub struct FetchArgs {
    /// The version: models:/NAME@ALIAS or models:/NAME/VERSION.
    #[arg(value_name = "MODEL_URI", value_parser = parse_reference)]
    reference: RegistryModel,
    /// The folder to write the version's files into. It appears whole or not at all (the files
    /// are verified in a folder beside it, then renamed into place); an existing folder that
    /// holds files is refused unless --force.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    registry: RegistryAddress,
    /// A file holding the bearer token, for a registry started with --tokens (the `reader`
    /// role is enough).
    #[arg(long, env = "WEIR_TOKEN_FILE", hide_env_values = true)]
    token_file: Option<PathBuf>,
    /// A PEM bundle of the CA(s) to trust for an https:// registry, instead of the system's.
    #[arg(long, env = "WEIR_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Download the files straight from the registry's S3 bucket through presigned URLs (no S3
    /// credentials here; still verified); a registry on a folder serves them itself.
    #[arg(long, env = "WEIR_REGISTRY_DIRECT_DOWNLOAD")]
    registry_direct_download: bool,
    /// Replace the files of a DIR that already holds some.
    #[arg(long)]
    force: bool,
    /// How to print what was fetched.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// A `models:/…` URI alone: `weir serve --model`'s `NAME=` prefix names a served model, which
/// means nothing to a folder.
fn parse_reference(text: &str) -> Result<RegistryModel, String> {
    if !text.trim_start().starts_with("models:/") {
        return Err(format!(
            "invalid model URI {text:?}: expected models:/NAME@ALIAS or models:/NAME/VERSION"
        ));
    }
    text.parse::<RegistryModel>().map_err(|e| e.to_string())
}

/// Where the files are verified before they appear at DIR, and how they get there.
enum Staging {
    /// A new folder beside DIR, renamed to DIR: DIR appears whole or not at all.
    Beside(PathBuf),
    /// A hidden folder inside DIR, whose entries are renamed into DIR. Used when DIR is a
    /// mount point (KServe's and Kubernetes' volumes, e.g. `/mnt/models`), which cannot be
    /// renamed or replaced, and whose filesystem the folder beside it is not on.
    Inside(PathBuf),
}

pub async fn run(args: FetchArgs) -> anyhow::Result<()> {
    let url = args.registry.url();
    let uri = uri_of(&args.reference);
    let token = args
        .token_file
        .as_deref()
        .map(read_token_file)
        .transpose()?;
    let http = weir_http::HttpClient::with_ca_file(args.ca_file.as_deref())?;
    let dir = args.dir.clone();
    let force = args.force;
    tokio::task::spawn_blocking(move || check_target(&dir, force))
        .await
        .context("the target check stopped unexpectedly")??;

    let sync = RegistrySync::new(RegistrySource {
        url,
        models: Vec::new(),
        // Fetching is one resolve and one download: nothing is polled.
        poll: Duration::from_secs(1),
        token,
        http,
        direct_download: args.registry_direct_download,
    });
    let resolved = sync
        .resolve(&args.reference)
        .await
        .with_context(|| format!("cannot resolve {uri}"))?;
    if let Some(reason) = resolved.refusal() {
        anyhow::bail!("refusing to fetch {uri}: {reason}");
    }
    let dir = args.dir.clone();
    let staging = tokio::task::spawn_blocking(move || prepare_staging(&dir))
        .await
        .context("preparing the download stopped unexpectedly")??;
    let files = sync
        .fetch(&resolved, staging.folder())
        .await
        .with_context(|| format!("cannot fetch {uri}"))?;
    let dir = args.dir.clone();
    tokio::task::spawn_blocking(move || install(&staging, &dir, force))
        .await
        .context("placing the files stopped unexpectedly")??;

    match args.output {
        Output::Json => crate::output::json(&json!({
            "uri": uri,
            "name": resolved.name,
            "version": resolved.version.to_string(),
            "sha256": resolved.sha256,
            "directory": args.dir.display().to_string(),
            "files": files
                .iter()
                .map(|f| json!({ "path": f.path, "sha256": f.sha256 }))
                .collect::<Vec<_>>(),
        })),
        Output::Table => print_fetched(
            &uri,
            &resolved.name,
            resolved.version,
            &resolved.sha256,
            &args.dir,
            files,
        ),
    }
    Ok(())
}

/// The reference as the user writes it, for messages.
fn uri_of(model: &RegistryModel) -> String {
    match &model.selector {
        weir_runtime::registry::Selector::Alias(alias) => format!("models:/{}@{alias}", model.name),
        weir_runtime::registry::Selector::Version(v) => format!("models:/{}/{v}", model.name),
    }
}

fn print_fetched(
    uri: &str,
    name: &str,
    version: u64,
    sha256: &str,
    dir: &Path,
    files: Vec<FetchedFile>,
) {
    println!(
        "fetched {uri}: '{name}' version {version} into {}",
        dir.display()
    );
    println!("digest sha256:{sha256}");
    table(
        &["file", "sha256"],
        files.into_iter().map(|f| vec![f.path, f.sha256]).collect(),
    );
}

/// Refuses a DIR that is not a folder, or that holds files (unless `force`), before anything
/// is asked of the registry.
fn check_target(dir: &Path, force: bool) -> anyhow::Result<()> {
    let metadata = match std::fs::metadata(dir) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    anyhow::ensure!(
        metadata.is_dir(),
        "{} exists and is not a folder",
        dir.display()
    );
    let holds_files = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .next()
        .is_some();
    anyhow::ensure!(
        !holds_files || force,
        "{} already holds files; pass --force to replace them",
        dir.display()
    );
    Ok(())
}

impl Staging {
    fn folder(&self) -> &Path {
        match self {
            Staging::Beside(folder) | Staging::Inside(folder) => folder,
        }
    }
}

/// Picks (and clears) the staging folder for DIR, creating DIR's parent when missing. Only
/// called once the version is known to be fetchable, so a refusal writes nothing.
fn prepare_staging(dir: &Path) -> anyhow::Result<Staging> {
    let hidden = format!(".weir-fetch-{}", std::process::id());
    let staging = if is_mount_point(dir) {
        Staging::Inside(dir.join(hidden))
    } else {
        let name = dir
            .file_name()
            .with_context(|| format!("{} does not name a folder", dir.display()))?
            .to_string_lossy();
        let parent = parent_of(dir);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        Staging::Beside(parent.join(format!(".{name}{hidden}")))
    };
    // A folder left by an earlier run with the same process id (a container restarted).
    let _ = std::fs::remove_dir_all(staging.folder());
    Ok(staging)
}

/// DIR's parent, `.` for a bare name.
fn parent_of(dir: &Path) -> &Path {
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// True when DIR is an existing folder on another filesystem than its parent.
#[cfg(unix)]
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(own) = std::fs::metadata(dir) else {
        return false;
    };
    let parent = dir
        .canonicalize()
        .ok()
        .and_then(|full| full.parent().map(Path::to_path_buf));
    match parent.and_then(|p| std::fs::metadata(p).ok()) {
        Some(parent) => own.is_dir() && own.dev() != parent.dev(),
        // The root folder: nothing above it to compare with, and nothing to rename it into.
        None => own.is_dir(),
    }
}

/// Elsewhere a folder is renamed into place; a mount point then fails with the OS's reason.
#[cfg(not(unix))]
fn is_mount_point(_dir: &Path) -> bool {
    false
}

/// Moves the verified files from `staging` to DIR, replacing what DIR held only with `force`
/// (checked again: files may have appeared during the download), then syncs the folder that
/// changed.
fn install(staging: &Staging, dir: &Path, force: bool) -> anyhow::Result<()> {
    let failed = |what: &str| format!("cannot {what} {}", dir.display());
    match staging {
        Staging::Beside(folder) => {
            let parent = parent_of(dir);
            // rename(2) replaces an empty folder; one holding files is moved aside first.
            let mut aside = folder.clone().into_os_string();
            aside.push("-old");
            let aside = PathBuf::from(aside);
            let replaced = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
            if replaced && !force {
                let _ = std::fs::remove_dir_all(folder);
                anyhow::bail!(
                    "{} already holds files; pass --force to replace them",
                    dir.display()
                );
            }
            if replaced {
                std::fs::rename(dir, &aside).with_context(|| failed("move aside"))?;
            }
            let placed = std::fs::rename(folder, dir).with_context(|| failed("create"));
            if let Err(err) = placed {
                let _ = std::fs::remove_dir_all(folder);
                if replaced {
                    let _ = std::fs::rename(&aside, dir);
                }
                return Err(err);
            }
            if replaced {
                std::fs::remove_dir_all(&aside)
                    .with_context(|| failed("clear the old files of"))?;
            }
            std::fs::File::open(parent)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", parent.display()))?;
        }
        Staging::Inside(folder) => {
            let own = folder.file_name();
            let mut old = Vec::new();
            for entry in std::fs::read_dir(dir).with_context(|| failed("read"))? {
                let entry = entry.with_context(|| failed("read"))?;
                if Some(entry.file_name().as_os_str()) != own {
                    old.push(entry);
                }
            }
            if !old.is_empty() && !force {
                let _ = std::fs::remove_dir_all(folder);
                anyhow::bail!(
                    "{} already holds files; pass --force to replace them",
                    dir.display()
                );
            }
            for entry in old {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                }
                .with_context(|| format!("cannot remove {}", path.display()))?;
            }
            for entry in std::fs::read_dir(folder).with_context(|| failed("read"))? {
                let entry = entry.with_context(|| failed("read"))?;
                std::fs::rename(entry.path(), dir.join(entry.file_name()))
                    .with_context(|| failed("move files into"))?;
            }
            std::fs::remove_dir(folder).with_context(|| failed("clean up"))?;
            std::fs::File::open(dir)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", dir.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("weir-fetch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn only_model_uris_are_fetched() {
        assert!(parse_reference("models:/iris@production").is_ok());
        assert!(parse_reference("models:/iris/3").is_ok());
        for bad in [
            "iris=models:/iris@production",
            "runs:/abc/model",
            "models:/iris",
            "models:/../x/1",
        ] {
            assert!(parse_reference(bad).is_err(), "{bad}");
        }
        assert_eq!(
            uri_of(&parse_reference("models:/iris@prod").unwrap()),
            "models:/iris@prod"
        );
    }

    #[test]
    fn a_folder_holding_files_is_refused_without_force() {
        let dir = scratch("target");
        let target = dir.join("model");
        check_target(&target, false).unwrap();
        std::fs::create_dir(&target).unwrap();
        check_target(&target, false).unwrap();
        std::fs::write(target.join("old.onnx"), "old").unwrap();
        let refused = check_target(&target, false).unwrap_err().to_string();
        assert!(
            refused.contains("already holds files; pass --force"),
            "{refused}"
        );
        check_target(&target, true).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        let refused = check_target(&file, true).unwrap_err().to_string();
        assert!(refused.contains("is not a folder"), "{refused}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn staged_files_replace_the_folder_whole() {
        let dir = scratch("install");
        let target = dir.join("model");
        std::fs::create_dir_all(target.join("stale")).unwrap();
        std::fs::write(target.join("stale/old.txt"), "old").unwrap();
        let staging = prepare_staging(&target).unwrap();
        assert!(matches!(staging, Staging::Beside(_)), "a plain folder");
        std::fs::create_dir_all(staging.folder().join("sub")).unwrap();
        std::fs::write(staging.folder().join("sub/new.txt"), "new").unwrap();
        install(&staging, &target, true).unwrap();
        assert_eq!(
            std::fs::read_to_string(target.join("sub/new.txt")).unwrap(),
            "new"
        );
        assert!(!target.join("stale").exists());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["model"], "nothing left beside the folder");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn staged_files_move_into_a_folder_that_cannot_be_renamed() {
        let dir = scratch("inside");
        std::fs::write(dir.join("old.txt"), "old").unwrap();
        let staging = Staging::Inside(dir.join(".weir-fetch-1"));
        std::fs::create_dir_all(staging.folder()).unwrap();
        std::fs::write(staging.folder().join("model.onnx"), "new").unwrap();
        install(&staging, &dir, true).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["model.onnx"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn mount_points_are_told_from_plain_folders() {
        let dir = scratch("mount");
        assert!(!is_mount_point(&dir));
        assert!(!is_mount_point(&dir.join("missing")));
        assert!(is_mount_point(Path::new("/")));
        assert!(
            is_mount_point(Path::new("/proc")),
            "procfs is its own filesystem"
        );
        assert!(!is_mount_point(Path::new("/proc/self/fd")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
