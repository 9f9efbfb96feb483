//! `weir fetch` against a real `weir registry` on loopback: approved versions land whole and
//! verified, everything else is refused with nothing written; and `weir serve --registry`
//! without --model-repository, caching versions in --cache-dir or the user's cache folder.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Process, Registry};

/// `weir` with none of the registry, identity or cache variables of the environment running
/// the tests.
fn weir() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    for variable in [
        "WEIR_REGISTRY",
        "WEIR_TRACKING_URI",
        "MLFLOW_TRACKING_URI",
        "WEIR_USER",
        "WEIR_TOKEN",
        "WEIR_TOKEN_FILE",
        "WEIR_CA_FILE",
        "WEIR_CACHE_DIR",
        "WEIR_MODEL_REPOSITORY",
        "WEIR_MODEL",
    ] {
        command.env_remove(variable);
    }
    command
}

fn demo_model(version: u32) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("src/demo/iris/{version}/model.onnx")),
    )
    .unwrap()
}

/// A version folder holding the demo iris `version` and a nested notes file.
fn version_folder(root: &Path, version: u32) -> PathBuf {
    let folder = root.join(format!("upload-{version}"));
    std::fs::create_dir_all(folder.join("extra")).unwrap();
    std::fs::write(folder.join("model.onnx"), demo_model(version)).unwrap();
    std::fs::write(folder.join("extra/notes.txt"), format!("iris v{version}")).unwrap();
    folder
}

/// `weir models ARGS` against `url` with `auth` (`--as USER` or `--token-file F`).
fn models(url: &str, auth: &[&str], args: &[&str]) -> Output {
    weir()
        .args(["models", "--registry", url])
        .args(auth)
        .args(args)
        .output()
        .unwrap()
}

/// Registers `folder` as a version of `name` (by alice) and, when `approve`, approves it (by
/// bob); its version number.
fn register(
    url: &str,
    alice: &[&str],
    bob: &[&str],
    name: &str,
    folder: &Path,
    approve: bool,
) -> String {
    let registered = common::stdout(&models(
        url,
        alice,
        &["register", name, folder.to_str().unwrap()],
    ));
    let version = registered
        .strip_prefix(&format!("registered {name} version "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no version in {registered}"))
        .to_owned();
    if approve {
        common::stdout(&models(url, bob, &["approve", name, &version]));
    }
    version
}

fn fetch(url: &str, args: &[&str]) -> Output {
    weir()
        .args(["fetch", "--registry", url])
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A refusal: exit code 1, the message on stderr, no panic.
fn refused(output: &Output) -> String {
    let error = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert!(!error.contains("panicked"), "{error}");
    error
}

/// The registry's digest of the iris `version` folder (`version_folder`), as registered.
fn digest(version: u32) -> String {
    let notes = format!("iris v{version}");
    let model = demo_model(version);
    weir_models::digest::artifact_digest([
        ("extra/notes.txt", notes.as_bytes()),
        ("model.onnx", model.as_slice()),
    ])
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn assert_is_iris(dir: &Path, version: u32) {
    assert_eq!(
        std::fs::read(dir.join("model.onnx")).unwrap(),
        demo_model(version)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("extra/notes.txt")).unwrap(),
        format!("iris v{version}")
    );
    assert_eq!(names(dir), ["extra", "model.onnx"]);
}

#[test]
fn approved_versions_are_fetched_whole_and_everything_else_is_refused() {
    let registry = Registry::start("fetch");
    let url = registry.url.as_str();
    let (alice, bob) = (["--as", "alice"], ["--as", "bob"]);
    let v1 = register(
        url,
        &alice,
        &bob,
        "iris",
        &version_folder(&registry.folder, 1),
        true,
    );
    common::stdout(&models(url, &alice, &["alias", "iris", "production", &v1]));
    let out = common::scratch("fetch-out");

    // By alias: the files, byte for byte, and what was fetched on stdout.
    let by_alias = out.join("by-alias");
    let fetched = common::stdout(&fetch(
        url,
        &["models:/iris@production", by_alias.to_str().unwrap()],
    ));
    assert_is_iris(&by_alias, 1);
    assert!(
        fetched.starts_with(&format!(
            "fetched models:/iris@production: 'iris' version 1 into {}",
            by_alias.display()
        )),
        "{fetched}"
    );
    assert!(
        fetched.contains(&format!("digest sha256:{}", digest(1))),
        "{fetched}"
    );
    assert!(
        fetched.lines().any(|l| l.starts_with("model.onnx ")),
        "{fetched}"
    );

    // By version, the registry named by WEIR_REGISTRY, into an existing empty folder; JSON.
    let by_version = out.join("by-version");
    std::fs::create_dir(&by_version).unwrap();
    let answer = weir()
        .env("WEIR_REGISTRY", url)
        .args(["fetch", "--output", "json", "models:/iris/1"])
        .arg(&by_version)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&common::stdout(&answer)).unwrap();
    assert_is_iris(&by_version, 1);
    assert_eq!(json["sha256"], digest(1));
    assert_eq!(json["version"], "1");
    assert_eq!(json["files"].as_array().unwrap().len(), 2);
    assert_eq!(
        names(&out),
        ["by-alias", "by-version"],
        "nothing left beside them"
    );

    // A folder holding files is refused, untouched; --force replaces its files.
    std::fs::write(by_alias.join("local.txt"), "mine").unwrap();
    let kept = fetch(url, &["models:/iris/1", by_alias.to_str().unwrap()]);
    let error = refused(&kept);
    assert!(
        error.contains(&format!(
            "{} already holds files; pass --force",
            by_alias.display()
        )),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(by_alias.join("local.txt")).unwrap(),
        "mine"
    );
    common::stdout(&fetch(
        url,
        &["models:/iris/1", by_alias.to_str().unwrap(), "--force"],
    ));
    assert_is_iris(&by_alias, 1);
    assert_eq!(
        names(&out),
        ["by-alias", "by-version"],
        "nothing left beside them"
    );

    // An unapproved version: refused, nothing written.
    let v2 = register(
        url,
        &alice,
        &bob,
        "iris",
        &version_folder(&registry.folder, 2),
        false,
    );
    let unapproved = out.join("unapproved");
    let error = refused(&fetch(
        url,
        &[&format!("models:/iris/{v2}"), unapproved.to_str().unwrap()],
    ));
    assert!(
        error.contains("refusing to fetch models:/iris/2: version 2 of 'iris' is not approved: 0 of 1 required approvals"),
        "{error}"
    );
    assert!(!unapproved.exists());
    // Also through an alias pointing at it (an unprotected alias may).
    common::stdout(&models(url, &alice, &["alias", "iris", "candidate", &v2]));
    let error = refused(&fetch(
        url,
        &["models:/iris@candidate", unapproved.to_str().unwrap()],
    ));
    assert!(error.contains("is not approved"), "{error}");
    assert!(!unapproved.exists());

    // Unknown model, unknown alias, unknown version: the registry's refusal in its own words
    // (MLflow answers 404 for a missing model or version, 400 for a missing alias).
    for (uri, named) in [
        ("models:/nope@production", "nope"),
        ("models:/iris@staging", "staging"),
        ("models:/iris/9", "9"),
    ] {
        let error = refused(&fetch(url, &[uri, unapproved.to_str().unwrap()]));
        assert!(
            error.contains(&format!("cannot resolve {uri}: the registry answered 4")),
            "{error}"
        );
        assert!(error.contains(named), "names {named}: {error}");
        assert!(!unapproved.exists());
    }
    // Not a model URI: a usage error before anything is asked.
    let usage = fetch(
        url,
        &["iris=models:/iris@production", unapproved.to_str().unwrap()],
    );
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("expected models:/NAME@ALIAS or models:/NAME/VERSION"));
    // No registry there.
    let error = refused(&fetch(
        "http://127.0.0.1:9",
        &["models:/iris/1", unapproved.to_str().unwrap()],
    ));
    assert!(error.contains("cannot reach the registry"), "{error}");
    assert_eq!(names(&out), ["by-alias", "by-version"], "nothing written");
    std::fs::remove_dir_all(&out).unwrap();
}

/// KServe's `/mnt/models` is a volume mounted at DIR: it cannot be renamed or replaced, and the
/// folder beside it is on another filesystem. The files are staged inside and moved in. Needs a
/// private mount namespace (`unshare -m`, root): elsewhere the test says so and stops.
#[test]
fn a_mount_point_is_filled_in_place() {
    let registry = Registry::start("fetch-mount");
    let url = registry.url.as_str();
    let (alice, bob) = (["--as", "alice"], ["--as", "bob"]);
    register(
        url,
        &alice,
        &bob,
        "iris",
        &version_folder(&registry.folder, 1),
        true,
    );
    let out = common::scratch("fetch-mount-out");
    let volume = out.join("volume");
    std::fs::create_dir(&volume).unwrap();
    let weir = env!("CARGO_BIN_EXE_weir");
    let script = format!(
        "mount -t tmpfs tmpfs {volume} || exit 77
         echo old > {volume}/old.txt
         {weir} fetch --registry {url} models:/iris/1 {volume} && exit 90
         {weir} fetch --registry {url} --force models:/iris/1 {volume} || exit 91
         cp -r {volume} {out}/copied",
        volume = volume.display(),
        out = out.display(),
    );
    let ran = weir_in_namespace(&script);
    if ran.status.code() == Some(77) || ran.status.code() == Some(127) {
        eprintln!(
            "skipped: no private mount namespace here ({})",
            stderr(&ran)
        );
        return;
    }
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert!(
        stderr(&ran).contains("already holds files; pass --force"),
        "{}",
        stderr(&ran)
    );
    assert_is_iris(&out.join("copied"), 1);
    assert!(
        names(&volume).is_empty(),
        "the mount was private to the namespace"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

/// `sh -c script` in a new mount namespace (`unshare -m`).
fn weir_in_namespace(script: &str) -> Output {
    let mut command = Command::new("unshare");
    command.args(["-m", "sh", "-c", script]);
    for variable in ["WEIR_REGISTRY", "WEIR_TOKEN_FILE", "WEIR_CA_FILE"] {
        command.env_remove(variable);
    }
    command.output().unwrap_or_else(|_| {
        Command::new("sh")
            .args(["-c", "exit 127"])
            .output()
            .unwrap()
    })
}

/// Overwrites the registry's stored blob holding `original` with `replacement`, as a disk
/// fault or someone with access to the artifact store would.
fn tamper_blob(blobs: &Path, original: &[u8], replacement: &[u8]) {
    let blob = std::fs::read_dir(blobs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| std::fs::read(path).unwrap() == original)
        .expect("the registry keeps the version's bytes in a blob");
    let mut permissions = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)] // a test tampering on purpose
    permissions.set_readonly(false);
    std::fs::set_permissions(&blob, permissions).unwrap();
    std::fs::write(&blob, replacement).unwrap();
}

#[test]
fn a_tampered_version_is_refused_and_nothing_is_written() {
    let registry = Registry::start("fetch-tampered");
    let url = registry.url.as_str();
    let (alice, bob) = (["--as", "alice"], ["--as", "bob"]);
    register(
        url,
        &alice,
        &bob,
        "iris",
        &version_folder(&registry.folder, 1),
        true,
    );
    let out = common::scratch("fetch-tampered-out");
    let target = out.join("model");
    // Before: it fetches.
    common::stdout(&fetch(url, &["models:/iris/1", target.to_str().unwrap()]));
    std::fs::remove_dir_all(&target).unwrap();

    tamper_blob(
        &registry.folder.join("artifacts/.weir/blobs/sha256"),
        &demo_model(1),
        &demo_model(2),
    );
    let error = refused(&fetch(url, &["models:/iris/1", target.to_str().unwrap()]));
    assert!(
        error.contains(&format!(
            "cannot fetch models:/iris/1: version 1 of 'iris' failed its integrity check: the registry recorded sha256 {}",
            digest(1)
        )),
        "{error}"
    );
    assert!(!target.exists());
    assert!(names(&out).is_empty(), "nothing left: {:?}", names(&out));
    std::fs::remove_dir_all(&out).unwrap();
}

/// A `weir registry` with identities: alice submits, bob approves, reader only reads.
fn registry_with_identities(dir: &Path) -> (Process, String) {
    let tokens = dir.join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[user]]\nname = \"alice\"\ntoken = \"alice-secret-token\"\nroles = [\"reader\", \"submitter\"]\n\
         [[user]]\nname = \"bob\"\ntoken = \"bob-secret-token\"\nroles = [\"reader\", \"approver\"]\n\
         [[user]]\nname = \"init\"\ntoken = \"init-secret-token\"\nroles = [\"reader\"]\n",
    )
    .unwrap();
    for user in ["alice", "bob", "init"] {
        std::fs::write(
            dir.join(format!("{user}.token")),
            format!("{user}-secret-token\n"),
        )
        .unwrap();
    }
    let mut child = weir()
        .args(["registry", "--http-port", "0", "--tokens"])
        .arg(&tokens)
        .arg("--db")
        .arg(format!("sqlite://{}/r.db", dir.display()))
        .arg("--artifacts")
        .arg(dir.join("artifacts"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = common::announced_url(&mut child);
    (Process(child), url)
}

#[test]
fn a_registry_with_identities_needs_a_reader_token() {
    let dir = common::scratch("fetch-identities");
    let (_registry, url) = registry_with_identities(&dir);
    let token = |user: &str| {
        dir.join(format!("{user}.token"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    let (alice, bob) = (token("alice"), token("bob"));
    register(
        &url,
        &["--token-file", &alice],
        &["--token-file", &bob],
        "iris",
        &version_folder(&dir, 1),
        true,
    );
    let target = dir.join("fetched");

    let error = refused(&fetch(&url, &["models:/iris/1", target.to_str().unwrap()]));
    assert!(
        error.contains("cannot resolve models:/iris/1") && error.contains("401 Unauthorized"),
        "{error}"
    );
    assert!(!target.exists());
    let error = refused(&fetch(
        &url,
        &[
            "models:/iris/1",
            target.to_str().unwrap(),
            "--token-file",
            dir.join("missing.token").to_str().unwrap(),
        ],
    ));
    assert!(error.contains("cannot read the token file"), "{error}");
    assert!(!target.exists());

    let fetched = common::stdout(&fetch(
        &url,
        &[
            "models:/iris/1",
            target.to_str().unwrap(),
            "--token-file",
            &token("init"),
        ],
    ));
    assert!(fetched.contains(&digest(1)), "{fetched}");
    assert_is_iris(&target, 1);
    // The token file from the environment; the token never shows in --help.
    let again = dir.join("again");
    common::stdout(
        &weir()
            .env("WEIR_TOKEN_FILE", token("init"))
            .args(["fetch", "--registry", &url, "models:/iris/1"])
            .arg(&again)
            .output()
            .unwrap(),
    );
    assert_is_iris(&again, 1);
    let help = weir()
        .env("WEIR_TOKEN_FILE", token("init"))
        .args(["fetch", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("WEIR_TOKEN_FILE") && !help.contains("init.token"),
        "{help}"
    );
}

/// `weir serve --registry URL --model …` without --model-repository, until the model serves;
/// the server is stopped when the returned process is dropped.
fn serve_from_registry(url: &str, configure: impl FnOnce(&mut Command)) -> (Process, String) {
    let mut command = weir();
    command
        .args(["serve", "--http-port", "0", "--registry", url])
        .args(["--model", "iris=models:/iris@production"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    configure(&mut command);
    let mut child = command.spawn().unwrap();
    let address = common::announced_address(&mut child);
    let process = Process(child);
    common::wait_for("the registry's version to serve", 60, || {
        common::get(&address, "/v2/models/iris/ready").0 == 200
    });
    (process, address)
}

fn infer_iris(address: &str) -> (u16, String) {
    let body = br#"{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}"#;
    common::http(
        address,
        "POST /v2/models/iris/infer",
        "Content-Type: application/json\r\n",
        body,
    )
    .map_or((0, String::new()), |(status, body)| {
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

#[test]
fn serve_caches_registry_versions_without_a_model_repository() {
    let registry = Registry::start("fetch-serve-cache");
    let url = registry.url.as_str();
    let (alice, bob) = (["--as", "alice"], ["--as", "bob"]);
    let v1 = register(
        url,
        &alice,
        &bob,
        "iris",
        &version_folder(&registry.folder, 1),
        true,
    );
    common::stdout(&models(url, &alice, &["alias", "iris", "production", &v1]));
    let scratch = common::scratch("fetch-serve-cache-home");

    // The user's cache folder, as XDG says: $XDG_CACHE_HOME/weir/models.
    let xdg = scratch.join("xdg");
    let (server, address) = serve_from_registry(url, |command| {
        command
            .env("XDG_CACHE_HOME", &xdg)
            .env("HOME", scratch.join("home"));
    });
    let (status, body) = infer_iris(&address);
    assert_eq!(status, 200, "{body}");
    let cached = xdg.join("weir/models/iris/1");
    assert_eq!(
        std::fs::read(cached.join("model.onnx")).unwrap(),
        demo_model(1)
    );
    // (ONNX Runtime keeps a folder of its own in the cache folder too: only weir's is checked.)
    assert!(
        !scratch.join("home/.cache/weir").exists(),
        "HOME is only the fallback"
    );
    drop(server);

    // No XDG_CACHE_HOME: $HOME/.cache/weir/models.
    let home = scratch.join("home");
    let (server, _) = serve_from_registry(url, |command| {
        command.env_remove("XDG_CACHE_HOME").env("HOME", &home);
    });
    assert!(home.join(".cache/weir/models/iris/1/model.onnx").is_file());
    drop(server);

    // --cache-dir (and WEIR_CACHE_DIR) win over both.
    let chosen = scratch.join("chosen/cache");
    let (server, address) = serve_from_registry(url, |command| {
        command
            .env("XDG_CACHE_HOME", scratch.join("unused"))
            .arg("--cache-dir")
            .arg(&chosen);
    });
    assert_eq!(infer_iris(&address).0, 200);
    assert!(chosen.join("iris/1/model.onnx").is_file());
    drop(server);
    let from_env = scratch.join("from-env");
    let (server, _) = serve_from_registry(url, |command| {
        command
            .env("XDG_CACHE_HOME", scratch.join("unused"))
            .env("WEIR_CACHE_DIR", &from_env);
    });
    assert!(from_env.join("iris/1/model.onnx").is_file());
    drop(server);
    assert!(!scratch.join("unused/weir").exists());

    // Without XDG_CACHE_HOME or HOME there is no default: a clear error.
    let nowhere = weir()
        .env_remove("XDG_CACHE_HOME")
        .env_remove("HOME")
        .args(["serve", "--http-port", "0", "--registry", url])
        .args(["--model", "iris=models:/iris@production"])
        .output()
        .unwrap();
    let error = refused(&nowhere);
    assert!(
        error.contains("pass --cache-dir or --model-repository"),
        "{error}"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// Without --registry the repository is the only source of models: still required.
#[test]
fn serve_without_a_registry_still_needs_a_model_repository() {
    let output = weir()
        .args(["serve", "--http-port", "0", "--cache-dir", "/tmp/unused"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    assert!(
        error.contains("the following required arguments were not provided")
            && error.contains("--model-repository"),
        "{error}"
    );
}
