//! The `weir` binary as a user meets it: flags, environment variables, and clear failures.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod common;

use common::test_models;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

#[test]
fn help_names_every_flag_and_its_environment_variable() {
    let output = weir().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--model-repository",
        "--host",
        "--http-port",
        "--max-body-bytes",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    for variable in [
        "WEIR_MODEL_REPOSITORY",
        "WEIR_HOST",
        "WEIR_HTTP_PORT",
        "WEIR_MAX_BODY_BYTES",
    ] {
        assert!(help.contains(variable), "{variable} missing from:\n{help}");
    }
}

#[test]
fn a_missing_repository_is_a_clear_error_and_exit_code() {
    let output = weir()
        .args([
            "serve",
            "--model-repository",
            "/nonexistent/models",
            "--http-port",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/models: no such directory"),
        "{stderr}"
    );
    assert!(stderr.contains("--registry"), "says how else: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// With --registry the repository is the download cache: a missing folder is created (with
/// its parents) and the server starts, unready until the registry's version loads.
#[test]
fn a_missing_repository_is_created_as_the_registry_cache() {
    let scratch = std::env::temp_dir().join(format!("weir-cli-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let cache = scratch.join("models");
    // Nobody listens on a port just released.
    let registry = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let mut child = weir()
        .args(["serve", "--http-port", "0", "--registry", &registry])
        .args(["--model", "iris=models:/iris@production"])
        .arg("--model-repository")
        .arg(&cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let address = common::announced_address(&mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        let (status, body) = common::get(&address, "/v2/health/ready");
        if body.contains("cannot reach the registry") || Instant::now() > deadline {
            break (status, body);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(cache.is_dir(), "{} was not created", cache.display());
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("'iris'"), "{body}");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// `weir serve --help` names the cache folder flag, its variable and its default; `weir fetch`
/// is listed among the commands. (tests/fetch.rs runs both against a registry.)
#[test]
fn help_names_the_registry_cache_and_fetch() {
    let help = weir().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for shown in [
        "--cache-dir",
        "WEIR_CACHE_DIR",
        "$XDG_CACHE_HOME/weir/models",
    ] {
        assert!(help.contains(shown), "{shown} missing from:\n{help}");
    }
    let commands = weir().arg("--help").output().unwrap();
    let commands = String::from_utf8_lossy(&commands.stdout);
    assert!(
        commands
            .lines()
            .any(|l| l.trim_start().starts_with("fetch ")),
        "{commands}"
    );
}

/// Logs written to a file or a pipe carry no colour codes (only a terminal gets them).
#[test]
fn piped_logs_have_no_colour_codes() {
    let output = weir()
        .args([
            "serve",
            "--model-repository",
            "/nonexistent/models",
            "--http-port",
            "0",
        ])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("memory limit"), "a log line: {stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "colour codes in piped logs: {stderr:?}"
    );
}

/// Every duration flag takes `500ms`/`10s`/`2m` or bare seconds; the old `-secs` names still
/// work; a bad value is a usage error (exit 2) naming it.
#[test]
fn duration_flags_take_one_syntax_and_their_old_names() {
    let help = weir().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for shown in [
        "--drain-timeout <",
        "[default: 30s]",
        "--repository-poll <",
        "[default: 15s]",
        "--registry-poll-interval <",
        "[default: 10s]",
        "--header-timeout <",
    ] {
        assert!(help.contains(shown), "{shown} missing from:\n{help}");
    }
    // Accepted: the run gets past parsing and fails on the missing repository (exit 1).
    for flags in [
        &["--drain-timeout", "500ms", "--repository-poll", "2m"][..],
        &["--drain-timeout-secs", "5", "--repository-poll-secs", "1"],
        &["--registry-poll-interval", "10s", "--idle-timeout", "1h"],
        &["--header-timeout-secs", "3", "--body-grace-secs", "0.5"],
    ] {
        let output = weir()
            .args([
                "serve",
                "--model-repository",
                "/nonexistent/models",
                "--http-port",
                "0",
            ])
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(
            stderr.contains("/nonexistent/models"),
            "{flags:?}: {stderr}"
        );
    }
    for (flag, value, message) in [
        ("--drain-timeout", "soon", "'soon' is not a duration"),
        ("--registry-poll-interval", "0", "must be more than 0"),
        ("--repository-poll-secs", "0s", "must be more than 0"),
        ("--header-timeout", "1d", "'1d' is not a duration"),
    ] {
        let output = weir()
            .args([
                "serve",
                "--model-repository",
                "/nonexistent/models",
                flag,
                value,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(message), "{flag} {value}: {stderr}");
    }
}

#[test]
fn flags_can_come_from_the_environment_and_a_busy_port_is_reported() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let output = weir()
        .arg("serve")
        .env("WEIR_MODEL_REPOSITORY", test_models())
        .env("WEIR_HTTP_PORT", port.to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

/// Without ONNX Runtime the server still starts, says how to install it, reports every ONNX
/// model as unavailable with that reason instead of panicking, and serves the others.
#[test]
fn missing_onnx_runtime_is_explained_not_a_panic() {
    let mut child = weir()
        .args(["serve", "--http-port", "0", "--model-repository"])
        .arg(test_models())
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so.1.32.0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = common::announced_address(&mut child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let index = loop {
        let answer = common::http(&address, "POST /v2/repository/index", "", b"")
            .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
            .unwrap_or_default();
        if answer.contains("ORT_DYLIB_PATH") || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        index.contains("ORT_DYLIB_PATH points at /nonexistent/libonnxruntime.so.1.32.0"),
        "{index}"
    );
    // Every ONNX model is unavailable with that reason; the candle models still serve.
    let rows: Vec<serde_json::Value> = serde_json::from_str(&index).unwrap();
    for row in &rows {
        let candle = row["name"].as_str().unwrap().starts_with("tabular");
        assert_eq!(
            row["state"],
            if candle { "READY" } else { "UNAVAILABLE" },
            "{row}"
        );
    }
    assert!(stderr.contains("ORT_DYLIB_PATH"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// weir starts itself again with glibc's per-thread malloc cache enlarged (src/thread_cache.rs):
/// the environment its running image started with (`/proc/PID/environ`) must carry the setting
/// beside the caller's other tunables, and a cache size the caller chose must be kept.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn weir_runs_with_a_larger_malloc_thread_cache_unless_one_is_chosen() {
    let repository = common::scratch("thread-cache");
    let tunables_of = |given: Option<&str>| {
        let mut command = weir();
        command
            .args(["serve", "--http-port", "0", "--model-repository"])
            .arg(&repository)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match given {
            Some(tunables) => command.env("GLIBC_TUNABLES", tunables),
            None => command.env_remove("GLIBC_TUNABLES"),
        };
        let mut child = common::Process(command.spawn().unwrap());
        // Once it announces its address, the server is the image that serves.
        common::announced_url(&mut child.0);
        let environ = std::fs::read(format!("/proc/{}/environ", child.0.id())).unwrap();
        child.kill_hard();
        let environ = String::from_utf8_lossy(&environ).into_owned();
        // glibc 2.36's loader parses the variable in place, writing a NUL over each `:`: the
        // tunables after the first then look like entries of their own.
        let mut entries = environ.split('\0');
        let first = entries.find_map(|entry| entry.strip_prefix("GLIBC_TUNABLES="))?;
        let rest = entries.take_while(|entry| entry.starts_with("glibc."));
        Some(
            std::iter::once(first)
                .chain(rest)
                .collect::<Vec<_>>()
                .join(":"),
        )
    };
    assert_eq!(
        tunables_of(None).as_deref(),
        Some("glibc.malloc.tcache_count=256")
    );
    assert_eq!(
        tunables_of(Some("glibc.malloc.arena_max=2")).as_deref(),
        Some("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=256")
    );
    assert_eq!(
        tunables_of(Some("glibc.malloc.tcache_count=7")).as_deref(),
        Some("glibc.malloc.tcache_count=7")
    );
}
