//! Client credentials and trust from the command line: `--token-file` against a real
//! `weir registry --tokens`, `--ca-file` against that registry behind HTTPS, and `weir serve`'s
//! start-up refusals (anonymous model control beyond loopback, unusable token files).

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::Process;
use weir_http::testing::{tls_forwarder, TestCerts};

const TOKEN: &str = "alices-long-secret-token";

/// A `weir registry` accepting only alice's token (the first form of the identities file).
fn registry_with_tokens(dir: &Path) -> (Process, String) {
    let tokens = dir.join("tokens.toml");
    std::fs::write(&tokens, format!("[tokens]\n\"{TOKEN}\" = \"alice\"\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["registry", "--http-port", "0", "--db"])
        .arg(format!("sqlite://{}/r.db", dir.display()))
        .arg("--artifacts")
        .arg(dir.join("artifacts"))
        .arg("--tokens")
        .arg(&tokens)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = common::announced_url(&mut child);
    (Process(child), url)
}

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env_remove("WEIR_TOKEN")
        .env_remove("WEIR_TOKEN_FILE")
        .env_remove("WEIR_CA_FILE")
        .env_remove("WEIR_USER")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn models_use_a_token_from_a_file() {
    let dir = common::scratch("token-files");
    let (_registry, url) = registry_with_tokens(&dir);
    // Surrounding whitespace (an editor's newline) is not part of the token.
    let token_file = write(&dir, "token", &format!("  {TOKEN}\n\n"));
    let token_file = token_file.to_str().unwrap();

    let created = weir(&[
        "models",
        "--registry",
        &url,
        "--token-file",
        token_file,
        "--output",
        "json",
        "list",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let folder = dir.join("v1");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), "a version").unwrap();
    let registered = weir(&[
        "models",
        "--registry",
        &url,
        "--token-file",
        token_file,
        "register",
        "iris",
        folder.to_str().unwrap(),
    ]);
    assert!(registered.status.success(), "{}", stderr(&registered));
    let audit = common::stdout(&weir(&[
        "models",
        "--registry",
        &url,
        "--token-file",
        token_file,
        "audit",
        "iris",
    ]));
    assert!(
        audit
            .lines()
            .skip(1)
            .all(|l| l.split_whitespace().nth(2) == Some("alice")),
        "the token names alice: {audit}"
    );
    let listed = common::stdout(&weir(&[
        "models",
        "--registry",
        &url,
        "--token-file",
        token_file,
        "list",
    ]));
    assert!(listed.lines().any(|l| l.starts_with("iris")), "{listed}");

    // Without a token, or with a wrong one, the registry refuses; the wrong token is not echoed.
    let anonymous = weir(&["models", "--registry", &url, "--as", "alice", "list"]);
    assert_eq!(anonymous.status.code(), Some(1));
    let wrong = write(&dir, "wrong", "not-alices-token-at-all\n");
    let refused = weir(&[
        "models",
        "--registry",
        &url,
        "--token-file",
        wrong.to_str().unwrap(),
        "list",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        !stderr(&refused).contains("not-alices-token-at-all"),
        "{}",
        stderr(&refused)
    );

    // `weir runs` reads with the same flags; without them the tracking server refuses.
    let runs = common::stdout(&weir(&[
        "runs",
        "--tracking-uri",
        &url,
        "--token-file",
        token_file,
        "list",
    ]));
    assert!(runs.starts_with("RUN ID"), "{runs}");
    let anonymous = weir(&["runs", "--tracking-uri", &url, "list"]);
    assert_eq!(anonymous.status.code(), Some(1));
    assert!(
        stderr(&anonymous).contains("UNAUTHENTICATED"),
        "{}",
        stderr(&anonymous)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_token_files_are_start_up_errors() {
    let dir = common::scratch("token-files-bad");
    let empty = write(&dir, "empty", " \n\t\n");
    let missing = dir.join("missing");
    for (args, expected) in [
        (
            vec!["models", "--token-file", missing.to_str().unwrap(), "list"],
            format!("cannot read the token file {}", missing.display()),
        ),
        (
            vec!["models", "--token-file", empty.to_str().unwrap(), "list"],
            format!("the token file {} is empty", empty.display()),
        ),
        (
            vec!["runs", "--token-file", missing.to_str().unwrap(), "list"],
            format!("cannot read the token file {}", missing.display()),
        ),
        (
            vec![
                "serve",
                "--model-repository",
                dir.to_str().unwrap(),
                "--http-port",
                "0",
                "--registry",
                "http://127.0.0.1:9",
                "--model",
                "iris=models:/iris@production",
                "--registry-token-file",
                empty.to_str().unwrap(),
            ],
            format!("the token file {} is empty", empty.display()),
        ),
        (
            vec![
                "models",
                "--registry",
                "https://127.0.0.1:9",
                "--ca-file",
                missing.to_str().unwrap(),
                "list",
            ],
            format!("cannot read the CA file {}", missing.display()),
        ),
    ] {
        let output = weir(&args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(&expected),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
    // Both --token and --token-file: a usage error, before anything is sent.
    let both = weir(&[
        "models",
        "--token",
        "x",
        "--token-file",
        empty.to_str().unwrap(),
        "list",
    ]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn models_reach_an_https_registry_with_its_ca_only() {
    let dir = common::scratch("token-files-https");
    let (_registry, url) = registry_with_tokens(&dir);
    let certs = TestCerts::generate("cli").unwrap();
    let backend = url.trim_start_matches("http://").parse().unwrap();
    let https = format!(
        "https://127.0.0.1:{}",
        tls_forwarder(&certs, backend).unwrap().port()
    );
    let token_file = write(&dir, "token", TOKEN);
    let token_file = token_file.to_str().unwrap();

    let trusted = weir(&[
        "models",
        "--registry",
        &https,
        "--token-file",
        token_file,
        "--ca-file",
        certs.ca.to_str().unwrap(),
        "list",
    ]);
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    assert!(String::from_utf8_lossy(&trusted.stdout).starts_with("NAME"));

    for ca in [None, Some(&certs.other_ca)] {
        let mut args = vec!["models", "--registry", &https, "--token-file", token_file];
        if let Some(ca) = ca {
            args.extend(["--ca-file", ca.to_str().unwrap()]);
        }
        args.push("list");
        let untrusted = weir(&args);
        assert_eq!(untrusted.status.code(), Some(1));
        assert!(
            stderr(&untrusted).contains("cannot reach the registry")
                && stderr(&untrusted).contains("certificate"),
            "{}",
            stderr(&untrusted)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serve_refuses_anonymous_model_control_beyond_loopback() {
    let dir = common::scratch("serve-anonymous");
    for mode in ["explicit", "poll"] {
        let refused = weir(&[
            "serve",
            "--model-repository",
            dir.to_str().unwrap(),
            "--http-port",
            "0",
            "--host",
            "0.0.0.0",
            "--model-control-mode",
            mode,
        ]);
        assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
        assert!(
            stderr(&refused).contains("refusing to listen on 0.0.0.0")
                && stderr(&refused).contains("--allow-anonymous"),
            "{}",
            stderr(&refused)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
