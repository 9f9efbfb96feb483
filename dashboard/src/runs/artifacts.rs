//! A run's artifacts: `/ui/runs/{run_id}/artifacts?path=DIR` lists a folder,
//! `/ui/runs/{run_id}/artifact?path=FILE` previews a file (text up to [`PREVIEW_BYTES`], images
//! through `raw`), `/ui/runs/{run_id}/raw?path=FILE` serves its bytes.
//!
//! Paths are user input, resolved below the run's own artifact folder by the artifact store,
//! which refuses `..` (and the registry's reserved folder). The bytes are streamed, never held
//! whole, and served under a type a browser cannot run: images as themselves, a few text
//! formats as `text/plain`, everything else (HTML and SVG included) as an
//! `application/octet-stream` attachment.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::Serialize;
use weir_registry::artifacts::{RangeSpec, Served};
use weir_registry::StoreError;

use super::query::Pairs;
use super::{
    artifact_root, bad_request, browse_href, join, not_found, preview_href, raw_href, tracking,
    RunLink,
};
use crate::page::{error_page, render, Viewer};

/// The most of a file a preview reads.
pub(super) const PREVIEW_BYTES: u64 = 256 * 1024;
/// Entries one folder listing shows at most.
const MAX_ENTRIES: usize = 1000;

/// Shown as images (through `raw`, under their own type); nothing else is.
const IMAGES: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
];

/// Served as `text/plain` rather than as a download (what runs commonly log as text).
const TEXT: &[&str] = &[
    "txt", "log", "json", "yaml", "yml", "csv", "tsv", "md", "py", "toml", "cfg", "ini",
];

/// One entry of a folder, its path relative to the run's artifact root.
#[derive(Serialize)]
pub(super) struct Entry {
    name: String,
    path: String,
    /// The folder's listing, or the file's preview.
    href: String,
    is_dir: bool,
    size: Option<u64>,
}

/// One step of the breadcrumb trail to a path.
#[derive(Serialize)]
struct Crumb {
    name: String,
    href: String,
}

/// The run an artifact request is about, and where its artifacts are.
struct Target {
    run: RunLink,
    root: String,
    /// The requested path relative to the run's root, tidied (no leading or trailing `/`).
    path: String,
}

impl Target {
    fn full(&self) -> String {
        join(&self.root, &self.path)
    }
}

/// The entries directly under `relative` in the run folder `root`, folders first.
pub(super) async fn listing(
    dashboard: &crate::State,
    viewer: &Viewer,
    run_id: &str,
    root: &str,
    relative: &str,
) -> Result<Vec<Entry>, Response> {
    let full = join(root, relative);
    let store = &dashboard.registry.artifacts;
    let files = match store.check_path(&full) {
        Ok(()) => store.list(&full).await,
        Err(err) => Err(err),
    }
    .map_err(|err| store_failure(viewer, err))?;
    let mut entries: Vec<Entry> = files
        .into_iter()
        .take(MAX_ENTRIES)
        .map(|file| {
            // Listings name entries relative to the folder listed (as MLflow's do); take the
            // last segment either way.
            let name = file
                .path
                .rsplit('/')
                .next()
                .unwrap_or(&file.path)
                .to_owned();
            let path = join(relative.trim_matches('/'), &name);
            Entry {
                href: if file.is_dir {
                    browse_href(run_id, &path)
                } else {
                    preview_href(run_id, &path)
                },
                path,
                name,
                is_dir: file.is_dir,
                size: file.file_size,
            }
        })
        .collect();
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    Ok(entries)
}

pub(super) async fn browse(
    State(dashboard): State<crate::State>,
    viewer: Viewer,
    Path(run_id): Path<String>,
    raw: RawQuery,
) -> Response {
    let target = match target(&dashboard, &viewer, run_id, &raw).await {
        Ok(target) => target,
        Err(page) => return page,
    };
    let entries = match listing(
        &dashboard,
        &viewer,
        &target.run.id,
        &target.root,
        &target.path,
    )
    .await
    {
        Ok(entries) => entries,
        Err(page) => return page,
    };
    let cut = entries.len() >= MAX_ENTRIES;
    render(
        &viewer,
        "runs/artifacts.html",
        context! {
            crumbs => crumbs(&target.run.id, &target.path),
            run => target.run,
            path => target.path,
            entries => entries,
            cut => cut,
        },
    )
}

pub(super) async fn preview(
    State(dashboard): State<crate::State>,
    viewer: Viewer,
    Path(run_id): Path<String>,
    raw: RawQuery,
) -> Response {
    let target = match target(&dashboard, &viewer, run_id, &raw).await {
        Ok(target) => target,
        Err(page) => return page,
    };
    if target.path.is_empty() {
        return bad_request(&viewer, "say which file to preview: ?path=FILE");
    }
    let range = RangeSpec::From {
        start: 0,
        end: Some(PREVIEW_BYTES - 1),
    };
    let download = match dashboard
        .registry
        .artifacts
        .read(&target.full(), Some(range))
        .await
    {
        Ok(download) => download,
        Err(err) => return store_failure(&viewer, err),
    };
    let size = download.size;
    let image = image_type(&target.path).is_some();
    let text = if image {
        None
    } else {
        let bytes = match download.served {
            Served::Unsatisfiable => Vec::new(),
            Served::Whole | Served::Part { .. } => {
                // The range bounds what is read; the limit bounds it again should a backend
                // send more.
                match axum::body::to_bytes(download.body, PREVIEW_BYTES as usize).await {
                    Ok(bytes) => bytes.to_vec(),
                    Err(err) => {
                        return error_page(
                            &viewer,
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &format!("artifact '{}' cannot be read: {err}", target.path),
                        )
                    }
                }
            }
        };
        as_text(&bytes)
    };
    let raw_link = raw_href(&target.run.id, &target.path);
    render(
        &viewer,
        "runs/artifact.html",
        context! {
            crumbs => crumbs(&target.run.id, &target.path),
            run => target.run,
            path => target.path,
            size => size,
            image => image,
            text => text,
            truncated => size > PREVIEW_BYTES,
            preview_bytes => PREVIEW_BYTES,
            raw_link => raw_link,
        },
    )
}

pub(super) async fn raw(
    State(dashboard): State<crate::State>,
    viewer: Viewer,
    Path(run_id): Path<String>,
    raw: RawQuery,
) -> Response {
    let target = match target(&dashboard, &viewer, run_id, &raw).await {
        Ok(target) => target,
        Err(page) => return page,
    };
    if target.path.is_empty() {
        return bad_request(&viewer, "say which file to download: ?path=FILE");
    }
    let download = match dashboard
        .registry
        .artifacts
        .read(&target.full(), None)
        .await
    {
        Ok(download) => download,
        Err(err) => return store_failure(&viewer, err),
    };
    let name = target.path.rsplit('/').next().unwrap_or_default();
    let mut response = Body::new(download.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(download.size));
    match served_type(&target.path) {
        Kind::Image(content_type) | Kind::Text(content_type) => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        Kind::Download => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(value) =
                HeaderValue::from_str(&format!("attachment; filename=\"{}\"", header_safe(name)))
            {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
        }
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The run named in the URL (404 when unknown) and the `path` asked for (400 with `..`).
async fn target(
    dashboard: &crate::State,
    viewer: &Viewer,
    run_id: String,
    raw: &RawQuery,
) -> Result<Target, Response> {
    let query = Pairs::read(raw).map_err(|message| bad_request(viewer, &message))?;
    let path = query
        .one("path")
        .unwrap_or_default()
        .trim_matches('/')
        .to_owned();
    if path.split('/').any(|segment| segment == "..") || path.contains(['\\', '\0']) {
        return Err(bad_request(
            viewer,
            &format!("invalid artifact path '{path}': use plain relative segments, without '..'"),
        ));
    }
    let id = run_id.clone();
    let run = tracking(dashboard, viewer, move |store| store.get_run(&id)).await?;
    let Some(root) = artifact_root(&run.info.artifact_uri) else {
        return Err(not_found(
            viewer,
            &format!(
                "run {run_id} keeps its artifacts at '{}', outside this registry's artifact store",
                run.info.artifact_uri
            ),
        ));
    };
    Ok(Target {
        run: RunLink::of(&run.info),
        root,
        path,
    })
}

/// The page for a failed artifact-store call (see [`super::failure`]).
fn store_failure(viewer: &Viewer, err: StoreError) -> Response {
    super::failure(viewer, err.into())
}

/// `a`, `a/b`, `a/b/c` for `a/b/c`, each linking to its folder.
fn crumbs(run_id: &str, path: &str) -> Vec<Crumb> {
    let mut crumbs = Vec::new();
    let mut so_far = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        so_far = join(&so_far, segment);
        crumbs.push(Crumb {
            name: segment.to_owned(),
            href: browse_href(run_id, &so_far),
        });
    }
    crumbs
}

fn extension(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or_default();
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

fn image_type(path: &str) -> Option<&'static str> {
    let ext = extension(path);
    IMAGES.iter().find(|(e, _)| *e == ext).map(|(_, t)| *t)
}

/// How `raw` serves a file.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Image(&'static str),
    Text(&'static str),
    Download,
}

fn served_type(path: &str) -> Kind {
    if let Some(image) = image_type(path) {
        return Kind::Image(image);
    }
    if TEXT.contains(&extension(path).as_str()) {
        return Kind::Text("text/plain; charset=utf-8");
    }
    Kind::Download
}

/// The bytes as text when they are (UTF-8 without NUL; a character cut by the preview's end is
/// dropped), else `None`: a binary file is offered for download instead.
fn as_text(bytes: &[u8]) -> Option<String> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        // Cut inside a character at the end: keep what came before it.
        Err(err) if err.error_len().is_none() => {
            std::str::from_utf8(&bytes[..err.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    (!text.contains('\0')).then(|| text.to_owned())
}

/// A file name for `Content-Disposition`: printable ASCII without quotes or backslashes.
fn header_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_images_and_plain_text_are_served_as_themselves() {
        assert_eq!(served_type("plots/loss.PNG"), Kind::Image("image/png"));
        assert_eq!(served_type("a.jpeg"), Kind::Image("image/jpeg"));
        assert_eq!(
            served_type("metrics.json"),
            Kind::Text("text/plain; charset=utf-8")
        );
        for dangerous in [
            "index.html",
            "x.htm",
            "chart.svg",
            "a.xml",
            "s.js",
            "noext",
            ".png",
        ] {
            assert_eq!(served_type(dangerous), Kind::Download, "{dangerous}");
        }
    }

    #[test]
    fn text_is_utf8_without_nul_even_when_cut_mid_character() {
        assert_eq!(as_text(b"hello\n").as_deref(), Some("hello\n"));
        let cut = "é".as_bytes()[..1].to_vec();
        let mut bytes = b"ab".to_vec();
        bytes.extend(cut);
        assert_eq!(as_text(&bytes).as_deref(), Some("ab"));
        assert_eq!(as_text(b"a\0b"), None);
        assert_eq!(as_text(&[0xff, 0xfe, b'a']), None);
        assert_eq!(as_text(b"").as_deref(), Some(""));
    }

    #[test]
    fn crumbs_lead_down_the_path() {
        let trail = crumbs("r1", "model/data/x.bin");
        let hrefs: Vec<&str> = trail.iter().map(|c| c.href.as_str()).collect();
        assert_eq!(
            hrefs,
            [
                "/ui/runs/r1/artifacts?path=model",
                "/ui/runs/r1/artifacts?path=model/data",
                "/ui/runs/r1/artifacts?path=model/data/x.bin"
            ]
        );
        assert!(crumbs("r1", "").is_empty());
    }

    #[test]
    fn download_names_cannot_break_the_header() {
        assert_eq!(header_safe("a\"b\\c\r\né.txt"), "a_b_c___.txt");
        assert_eq!(header_safe("report 1.html"), "report 1.html");
    }
}
