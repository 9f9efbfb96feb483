//! The experiments and runs pages: every page for every role, the refusals (unknown ids,
//! filters the store cannot read, `..` in artifact paths, comparisons of too few or too many
//! runs), the comparison's highlighted differences and charts, and artifact bytes served under
//! types a browser cannot run.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod dashboard_common;

use axum::http::{header, StatusCode};
use dashboard_common::{start, start_anonymous, Browser, Harness, Page};
use weir_tracking::store::{KeyValue, Metric, NewRun};

const ROLES: [&str; 5] = ["rita", "sam", "avery", "ada", "cody"];

/// A tiny PNG's first bytes: the page never decodes it, the browser would.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\nnot really an image";

/// What the tests log: an experiment with two finished runs that differ in `lr`, agree on
/// `optimizer`, and each log a `rmse` history; the first also logs artifacts and a model.
struct Seeded {
    experiment: String,
    fast: String,
    slow: String,
}

async fn seed(harness: &Harness) -> Seeded {
    let store = &harness.stores.tracking.store;
    let experiment = store.create_experiment("iris", None, &[]).unwrap();
    let mut ids = Vec::new();
    for (name, lr, rmse) in [
        ("fast-run", "0.1", [0.9, 0.5, 0.2]),
        ("slow-run", "0.01", [0.9, 0.8, 0.7]),
    ] {
        let run = store
            .create_run(&NewRun {
                experiment_id: experiment.clone(),
                user_id: "sam".to_owned(),
                run_name: name.to_owned(),
                start_time: Some(1_795_934_412_000),
                tags: vec![KeyValue::new("team", "vision")],
            })
            .unwrap();
        let metrics: Vec<Metric> = rmse
            .iter()
            .enumerate()
            .map(|(step, value)| Metric {
                key: "rmse".to_owned(),
                value: *value,
                timestamp: 1_795_934_412_000 + step as i64 * 60_000,
                step: step as i64,
            })
            .collect();
        let params = [KeyValue::new("lr", lr), KeyValue::new("optimizer", "adam")];
        store
            .log_batch(&run.info.run_id, &metrics, &params, &[])
            .unwrap();
        store
            .update_run(
                &run.info.run_id,
                Some("FINISHED"),
                Some(1_795_934_600_000),
                None,
            )
            .unwrap();
        ids.push(run.info.run_id);
    }
    let fast = ids[0].clone();
    let root = format!("{experiment}/{fast}/artifacts");
    let artifacts = &harness.stores.registry.artifacts;
    let put = |path: &str, bytes: Vec<u8>| {
        let relative = format!("{root}/{path}");
        async move { artifacts.put(&relative, &bytes).await.unwrap() }
    };
    put("notes.txt", b"first line <b>not bold</b>\n".to_vec()).await;
    put("plots/loss.png", PNG.to_vec()).await;
    put("report.html", b"<script>alert(1)</script>".to_vec()).await;
    put(
        "model/MLmodel",
        b"flavors:\n  python_function: {}\n".to_vec(),
    )
    .await;
    put("model/weights.bin", vec![0, 159, 146, 150, 0, 1]).await;
    put("big.log", "0123456789abcdef".repeat(20_000).into_bytes()).await;
    store
        .create_logged_model(&experiment, "iris-model", &fast, "sklearn", &[], &[])
        .unwrap();
    Seeded {
        experiment,
        fast,
        slow: ids[1].clone(),
    }
}

/// The pages of the runs module for the seeded data, with what each must show.
fn pages(s: &Seeded) -> Vec<(String, Vec<&'static str>)> {
    let run = |id: &str| format!("/ui/experiments/{}/runs/{id}", s.experiment);
    vec![
        ("/ui/experiments".to_owned(), vec!["iris"]),
        ("/ui/experiments?q=IRI".to_owned(), vec!["iris"]),
        (
            format!("/ui/experiments/{}", s.experiment),
            vec!["fast-run", "slow-run", "name=\"runs\"", "rmse"],
        ),
        (
            run(&s.fast),
            vec![
                "fast-run",
                "<svg",
                "rmse",
                "lr",
                "0.1",
                "team",
                "notes.txt",
                "iris-model",
            ],
        ),
        (
            format!("/ui/runs/{}/artifacts?path=model", s.fast),
            vec!["MLmodel", "weights.bin"],
        ),
        (
            format!("/ui/runs/{}/artifact?path=notes.txt", s.fast),
            vec!["pre class=\"preview\"", "first line &lt;b&gt;not bold"],
        ),
        (
            format!("/ui/compare?runs={}&runs={}", s.fast, s.slow),
            vec!["fast-run", "slow-run", "<svg", "class=\"diff\""],
        ),
    ]
}

/// The page with the escapes the template puts in attribute values (`/` as `&#x2f;`) undone,
/// as a browser reads them.
fn attributes(body: &str) -> String {
    body.replace("&#x2f;", "/").replace("&amp;", "&")
}

/// Page forms that change something: the runs pages have none, so only the layout's own
/// sign-out form may post.
fn posting_forms(page: &Page) -> usize {
    page.body.matches("method=\"post\"").count()
}

#[tokio::test]
async fn every_runs_page_answers_every_role_and_offers_no_action() {
    let harness = start("runs-roles").await;
    let seeded = seed(&harness).await;
    for role in ROLES {
        let mut browser = Browser::signed_in(&harness, role).await;
        for (path, wanted) in pages(&seeded) {
            let page = browser.get(&path).await;
            assert_eq!(page.status, StatusCode::OK, "{role} {path}: {}", page.body);
            for text in wanted {
                assert!(
                    page.body.contains(text),
                    "{role} {path} lacks {text:?}: {}",
                    page.body
                );
            }
            assert_eq!(
                posting_forms(&page),
                1,
                "{role} {path}: only sign-out posts"
            );
            assert!(!page.body.contains("<script>alert"), "{path}");
        }
    }
}

#[tokio::test]
async fn a_caller_not_signed_in_is_sent_to_sign_in_and_shown_nothing() {
    let harness = start("runs-anonymous-caller").await;
    let seeded = seed(&harness).await;
    let mut browser = Browser::new(&harness);
    let mut paths: Vec<String> = pages(&seeded).into_iter().map(|(p, _)| p).collect();
    paths.push(format!("/ui/runs/{}/raw?path=notes.txt", seeded.fast));
    for path in paths {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}: {}", page.body);
        assert!(
            page.location().unwrap().starts_with("/ui/sign-in?next="),
            "{path}"
        );
        assert!(!page.body.contains("fast-run") && !page.body.contains("first line"));
    }
}

#[tokio::test]
async fn without_identities_the_pages_are_open_and_post_nothing() {
    let harness = start_anonymous("runs-open").await;
    let seeded = seed(&harness).await;
    let mut browser = Browser::new(&harness);
    for (path, wanted) in pages(&seeded) {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(page.body.contains(wanted[0]), "{path}");
        assert_eq!(posting_forms(&page), 0, "{path}");
    }
}

#[tokio::test]
async fn unknown_experiments_and_runs_are_404_pages() {
    let harness = start("runs-unknown").await;
    let seeded = seed(&harness).await;
    let mut browser = Browser::signed_in(&harness, "rita").await;
    for path in [
        "/ui/experiments/999".to_owned(),
        "/ui/experiments/not-a-number".to_owned(),
        format!(
            "/ui/experiments/{}/runs/0123456789abcdef",
            seeded.experiment
        ),
        "/ui/runs/0123456789abcdef/artifacts".to_owned(),
        "/ui/runs/0123456789abcdef/artifact?path=notes.txt".to_owned(),
        "/ui/runs/0123456789abcdef/raw?path=notes.txt".to_owned(),
        format!("/ui/runs/{}/artifact?path=missing.txt", seeded.fast),
        format!("/ui/runs/{}/raw?path=missing.txt", seeded.fast),
        format!("/ui/compare?runs={}&runs=0123456789abcdef", seeded.fast),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.body);
        assert!(
            page.body.contains("<h1>404"),
            "{path}: a page, not bare text"
        );
        assert!(!page.body.contains("fast-run"), "{path}");
    }
}

#[tokio::test]
async fn a_run_under_another_experiment_redirects_to_its_own() {
    let harness = start("runs-moved").await;
    let seeded = seed(&harness).await;
    let mut browser = Browser::signed_in(&harness, "rita").await;
    let page = browser
        .get(&format!("/ui/experiments/0/runs/{}", seeded.fast))
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.location(),
        Some(format!("/ui/experiments/{}/runs/{}", seeded.experiment, seeded.fast).as_str())
    );
}

#[tokio::test]
async fn filters_and_order_use_mlflows_language_and_bad_ones_are_400_pages_naming_the_problem() {
    let harness = start("runs-filter").await;
    let seeded = seed(&harness).await;
    let mut browser = Browser::signed_in(&harness, "rita").await;
    let base = format!("/ui/experiments/{}", seeded.experiment);

    let low = browser
        .get(&format!("{base}?filter=metrics.rmse%20%3C%200.5"))
        .await;
    assert_eq!(low.status, StatusCode::OK, "{}", low.body);
    assert!(
        low.body.contains("fast-run") && !low.body.contains("slow-run"),
        "{}",
        low.body
    );
    assert!(
        low.body.contains("value=\"metrics.rmse &lt; 0.5\""),
        "the filter stays in its box"
    );

    let by_param = browser
        .get(&format!("{base}?filter=params.lr%20%3D%20%270.01%27"))
        .await;
    assert!(by_param.body.contains("slow-run") && !by_param.body.contains("fast-run"));

    for (order, first, second) in [
        ("metrics.rmse%20DESC", "slow-run", "fast-run"),
        ("metrics.rmse%20ASC", "fast-run", "slow-run"),
    ] {
        let page = browser.get(&format!("{base}?order={order}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let (a, b) = (
            page.body.find(first).unwrap(),
            page.body.find(second).unwrap(),
        );
        assert!(a < b, "{order}: {first} before {second}");
    }

    for (query, named) in [
        (
            "filter=metrics.rmse%20%3C%3C%201",
            "invalid filter at position",
        ),
        (
            "filter=name%20%3D%20%27a%27%20OR%20name%20%3D%20%27b%27",
            "invalid filter",
        ),
        ("filter=metrics.rmse%20LIKE%20%27x%27", "rmse"),
        ("order=metrics.rmse%20SIDEWAYS", "invalid order_by"),
        ("offset=-1", "invalid offset"),
    ] {
        let page = browser.get(&format!("{base}?{query}")).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            page.body
        );
        assert!(
            page.body.contains(named),
            "{query} does not say {named:?}: {}",
            page.body
        );
        assert!(page.body.contains("<h1>400"), "{query}");
    }
}

#[tokio::test]
async fn compare_highlights_differing_params_and_overlays_one_line_per_run() {
    let harness = start("runs-compare").await;
    let seeded = seed(&harness).await;
    let mut browser = Browser::signed_in(&harness, "rita").await;
    let page = browser
        .get(&format!(
            "/ui/compare?runs={}&runs={}",
            seeded.fast, seeded.slow
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert!(body.contains("<tr class=\"diff\"><td>lr</td>"), "{body}");
    assert!(body.contains("<tr><td>optimizer</td>"), "{body}");
    // The latest rmse differs (0.2 and 0.7), and both values are shown.
    assert!(body.contains("<tr class=\"diff\"><td>rmse</td>"), "{body}");
    assert!(body.contains(">0.2<") && body.contains(">0.7<"), "{body}");
    // One chart (one metric key), one line per run, x the step.
    assert_eq!(body.matches("<svg").count(), 1);
    assert!(body.contains("class=\"line series-0\"") && body.contains("class=\"line series-1\""));
    assert!(!body.contains("series-2"));
    assert!(body.contains(">step</text>"));

    let by_time = browser
        .get(&format!(
            "/ui/compare?runs={}&runs={}&x=time",
            seeded.fast, seeded.slow
        ))
        .await;
    assert_eq!(by_time.status, StatusCode::OK);
    assert!(
        by_time.body.contains(">time (UTC)</text>"),
        "{}",
        by_time.body
    );
    assert!(
        by_time.body.contains(":00</text>"),
        "clock times on x: {}",
        by_time.body
    );
}

#[tokio::test]
async fn compare_takes_two_to_ten_runs_and_a_known_axis() {
    let harness = start("runs-compare-count").await;
    let seeded = seed(&harness).await;
    let mut browser = Browser::signed_in(&harness, "rita").await;
    let eleven: String = (0..11).map(|i| format!("runs=r{i}&")).collect();
    for query in [
        String::new(),
        format!("runs={}", seeded.fast),
        format!("runs={0}&runs={0}", seeded.fast),
        eleven,
        format!("runs={}&runs={}&x=epoch", seeded.fast, seeded.slow),
    ] {
        let page = browser.get(&format!("/ui/compare?{query}")).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            page.body
        );
        assert!(page.body.contains("<h1>400"), "{query}");
    }
}

#[tokio::test]
async fn artifact_paths_cannot_leave_the_runs_folder() {
    let harness = start("runs-traversal").await;
    let seeded = seed(&harness).await;
    // Another run's file, one `..` away from the first run's folder.
    let slow_root = format!("{}/{}/artifacts", seeded.experiment, seeded.slow);
    harness
        .stores
        .registry
        .artifacts
        .put(&format!("{slow_root}/secret.txt"), b"not yours")
        .await
        .unwrap();
    let mut browser = Browser::signed_in(&harness, "rita").await;
    let escape = format!("../../{}/artifacts/secret.txt", seeded.slow);
    for page_kind in ["artifacts", "artifact", "raw"] {
        for path in [escape.as_str(), "..", "model/../../..", "a\\..\\b"] {
            let url = format!(
                "/ui/runs/{}/{page_kind}?path={}",
                seeded.fast,
                path.replace('\\', "%5C")
            );
            let page = browser.get(&url).await;
            assert_eq!(page.status, StatusCode::BAD_REQUEST, "{url}: {}", page.body);
            assert!(!page.body.contains("not yours"), "{url}");
        }
    }
}

#[tokio::test]
async fn raw_artifacts_are_served_under_types_a_browser_cannot_run() {
    let harness = start("runs-raw").await;
    let seeded = seed(&harness).await;
    let mut browser = Browser::signed_in(&harness, "rita").await;
    let raw = |path: &str| format!("/ui/runs/{}/raw?path={path}", seeded.fast);

    let png = browser.get(&raw("plots/loss.png")).await;
    assert_eq!(png.status, StatusCode::OK);
    assert_eq!(png.headers[header::CONTENT_TYPE], "image/png");

    let html = browser.get(&raw("report.html")).await;
    assert_eq!(html.status, StatusCode::OK);
    let content_type = html.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert_eq!(content_type, "application/octet-stream");
    assert!(!content_type.contains("html"));
    let disposition = html.headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert_eq!(disposition, "attachment; filename=\"report.html\"");
    assert_eq!(html.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(
        html.body, "<script>alert(1)</script>",
        "the bytes, unchanged"
    );

    let text = browser.get(&raw("notes.txt")).await;
    assert_eq!(
        text.headers[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert!(text.headers.get(header::CONTENT_DISPOSITION).is_none());

    let binary = browser.get(&raw("model/weights.bin")).await;
    assert_eq!(
        binary.headers[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert_eq!(binary.headers[header::CONTENT_LENGTH], "6");

    let big = browser.get(&raw("big.log")).await;
    assert_eq!(big.body.len(), 320_000, "raw serves the whole file");

    let folder = browser.get(&raw("model")).await;
    assert_eq!(folder.status, StatusCode::NOT_FOUND);
    let nothing = browser.get(&format!("/ui/runs/{}/raw", seeded.fast)).await;
    assert_eq!(nothing.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn previews_show_text_escaped_and_bounded_images_through_raw_and_binaries_not_at_all() {
    let harness = start("runs-preview").await;
    let seeded = seed(&harness).await;
    let mut browser = Browser::signed_in(&harness, "rita").await;
    let preview = |path: &str| format!("/ui/runs/{}/artifact?path={path}", seeded.fast);

    let html = browser.get(&preview("report.html")).await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(
        html.body.contains("&lt;script&gt;alert(1)"),
        "{}",
        html.body
    );
    assert!(!html.body.contains("<script>alert"));

    let big = browser.get(&preview("big.log")).await;
    assert_eq!(big.status, StatusCode::OK);
    assert!(
        big.body.contains("The first 256.0 KiB are shown"),
        "{}",
        &big.body[..2000]
    );
    let shown = big.body.matches("0123456789abcdef").count();
    assert_eq!(shown, 256 * 1024 / 16, "exactly the first 256 KiB");

    let image = browser.get(&preview("plots/loss.png")).await;
    assert!(
        attributes(&image.body).contains(&format!(
            "<img class=\"artifact\" src=\"/ui/runs/{}/raw?path=plots/loss.png\"",
            seeded.fast
        )),
        "{}",
        image.body
    );

    let binary = browser.get(&preview("model/weights.bin")).await;
    assert!(binary.body.contains("A binary file"), "{}", binary.body);
    assert!(!binary.body.contains("pre class=\"preview\""));

    let folder = browser
        .get(&format!("/ui/runs/{}/artifacts", seeded.fast))
        .await;
    for link in [
        format!("/ui/runs/{}/artifacts?path=model", seeded.fast),
        format!("/ui/runs/{}/artifact?path=notes.txt", seeded.fast),
    ] {
        let body = attributes(&folder.body);
        assert!(body.contains(&format!("href=\"{link}\"")), "{link}: {body}");
    }
}

#[tokio::test]
async fn user_data_is_escaped_on_every_runs_page_and_in_charts() {
    let harness = start("runs-escape").await;
    let store = &harness.stores.tracking.store;
    let experiment = store
        .create_experiment("<img src=x onerror=alert(1)>", None, &[])
        .unwrap();
    let evil = "<script>alert(2)</script>";
    let mut ids = Vec::new();
    for _ in 0..2 {
        let run = store
            .create_run(&NewRun {
                experiment_id: experiment.clone(),
                run_name: evil.to_owned(),
                ..NewRun::default()
            })
            .unwrap();
        let metric = Metric {
            key: "rmse".to_owned(),
            value: 1.0,
            timestamp: 1,
            step: 0,
        };
        store
            .log_batch(
                &run.info.run_id,
                &[metric],
                &[KeyValue::new("p", evil)],
                &[],
            )
            .unwrap();
        ids.push(run.info.run_id);
    }
    let mut browser = Browser::signed_in(&harness, "rita").await;
    for path in [
        "/ui/experiments".to_owned(),
        format!("/ui/experiments/{experiment}"),
        format!("/ui/experiments/{experiment}/runs/{}", ids[0]),
        format!("/ui/compare?runs={}&runs={}", ids[0], ids[1]),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        assert!(
            !page.body.contains("<script>alert"),
            "{path}: {}",
            page.body
        );
        assert!(!page.body.contains("<img src=x"), "{path}");
    }
}

/// The W3C Nu checker (vnu.jar, from npm's `vnu-jar` in tests/browser) over every runs page,
/// when it and `java` are installed; `WEIR_REQUIRE_VNU=1` makes their absence a failure.
#[tokio::test]
async fn every_runs_page_is_valid_html() {
    let jar = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/browser/node_modules/vnu-jar/build/dist/vnu.jar");
    let java = std::process::Command::new("java").arg("-version").output();
    if !jar.is_file() || java.is_err() {
        assert!(
            std::env::var_os("WEIR_REQUIRE_VNU").is_none(),
            "WEIR_REQUIRE_VNU is set but {} or java is missing",
            jar.display()
        );
        eprintln!("skipped: no vnu.jar or java");
        return;
    }
    let harness = start("runs-valid").await;
    let seeded = seed(&harness).await;
    let mut browser = Browser::signed_in(&harness, "ada").await;
    let folder = std::env::temp_dir().join(format!("weir-runs-vnu-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let mut paths: Vec<String> = pages(&seeded).into_iter().map(|(p, _)| p).collect();
    paths.extend([
        format!("/ui/runs/{}/artifact?path=plots/loss.png", seeded.fast),
        format!("/ui/runs/{}/artifact?path=big.log", seeded.fast),
        format!("/ui/runs/{}/artifact?path=model/weights.bin", seeded.fast),
        format!("/ui/runs/{}/artifacts", seeded.fast),
        format!(
            "/ui/experiments/{}?filter=metrics.rmse%20%3C%200",
            seeded.experiment
        ),
        format!(
            "/ui/experiments/{}/runs/{}?x=time",
            seeded.experiment, seeded.slow
        ),
        "/ui/experiments/999".to_owned(),
    ]);
    let mut files = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let page = browser.get(path).await;
        let file = folder.join(format!("page-{i}.html"));
        std::fs::write(&file, &page.body).unwrap();
        files.push(file);
    }
    let checked = std::process::Command::new("java")
        .arg("-jar")
        .arg(&jar)
        .arg("--errors-only")
        .args(&files)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&checked.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&folder);
    assert!(
        checked.status.success(),
        "invalid HTML ({paths:?} are page-0… in order):\n{report}"
    );
}

/// Sends one MLflow API call as `<name>-token`, the way the mlflow client does; the answer's
/// body as text.
async fn api(harness: &Harness, method: &str, path: &str, caller: &str, body: &str) -> String {
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {caller}-token"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap();
    let response = harness.app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(status.is_success(), "{method} {path}: {status} {text}");
    text
}

/// The first string value of `"key"` in a JSON answer (the server writes no spaces).
fn string_field(json: &str, key: &str) -> String {
    let marker = format!("\"{key}\":\"");
    let at = json.find(&marker).unwrap() + marker.len();
    json[at..at + json[at..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn a_run_logged_through_the_mlflow_api_shows_its_metrics_params_and_artifacts() {
    let harness = start("runs-api").await;
    let at = |path: &str| format!("/api/2.0/mlflow/{path}");
    let created = api(
        &harness,
        "POST",
        &at("experiments/create"),
        "sam",
        r#"{"name":"wine"}"#,
    )
    .await;
    let experiment = string_field(&created, "experiment_id");
    let run = api(
        &harness,
        "POST",
        &at("runs/create"),
        "sam",
        &format!(
            r#"{{"experiment_id":"{experiment}","run_name":"api-run","start_time":1795934412000}}"#
        ),
    )
    .await;
    let run_id = string_field(&run, "run_id");
    let artifact_uri = string_field(&run, "artifact_uri");
    let metrics: Vec<String> = (0..4)
        .map(|step| {
            format!(
                r#"{{"key":"accuracy","value":{},"timestamp":{},"step":{step}}}"#,
                0.5 + f64::from(step) / 10.0,
                1_795_934_412_000_i64 + i64::from(step) * 1000
            )
        })
        .collect();
    api(
        &harness,
        "POST",
        &at("runs/log-batch"),
        "sam",
        &format!(
            r#"{{"run_id":"{run_id}","metrics":[{}],"params":[{{"key":"depth","value":"7"}}]}}"#,
            metrics.join(",")
        ),
    )
    .await;
    let root = artifact_uri.strip_prefix("mlflow-artifacts:/").unwrap();
    api(
        &harness,
        "PUT",
        &format!("/api/2.0/mlflow-artifacts/artifacts/{root}/eval/summary.json"),
        "sam",
        r#"{"accuracy": 0.8}"#,
    )
    .await;

    let mut browser = Browser::signed_in(&harness, "rita").await;
    let page = browser
        .get(&format!("/ui/experiments/{experiment}/runs/{run_id}"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for text in [
        "api-run", "accuracy", "depth", ">7<", ">0.8<", "eval/", "<svg",
    ] {
        assert!(page.body.contains(text), "lacks {text:?}: {}", page.body);
    }
    // Four points on whole steps: one line through them, ticks on whole steps.
    assert!(page.body.contains("class=\"line series-0\""));
    assert!(page.body.contains(">3</text>") && !page.body.contains(">1.5</text>"));
    let file = browser
        .get(&format!(
            "/ui/runs/{run_id}/artifact?path=eval/summary.json"
        ))
        .await;
    assert!(
        file.body.contains("{&quot;accuracy&quot;: 0.8}"),
        "{}",
        file.body
    );
    let raw = browser
        .get(&format!("/ui/runs/{run_id}/raw?path=eval/summary.json"))
        .await;
    assert_eq!(raw.body, r#"{"accuracy": 0.8}"#);
    assert_eq!(
        raw.headers[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
}

#[tokio::test]
async fn a_deleted_run_leaves_the_list_but_its_page_says_deleted() {
    let harness = start("runs-deleted").await;
    let seeded = seed(&harness).await;
    harness
        .stores
        .tracking
        .store
        .set_run_lifecycle(&seeded.slow, true)
        .unwrap();
    let mut browser = Browser::signed_in(&harness, "rita").await;
    let list = browser
        .get(&format!("/ui/experiments/{}", seeded.experiment))
        .await;
    assert!(list.body.contains("fast-run") && !list.body.contains("slow-run"));
    let page = browser
        .get(&format!(
            "/ui/experiments/{}/runs/{}",
            seeded.experiment, seeded.slow
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("<span class=\"badge bad\">deleted</span>"),
        "{}",
        page.body
    );
    let live = browser
        .get(&format!(
            "/ui/experiments/{}/runs/{}",
            seeded.experiment, seeded.fast
        ))
        .await;
    assert!(!live.body.contains(">deleted</span>"));
}
