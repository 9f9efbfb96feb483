//! The models pages: registered models, a model's versions, a version's approval state and
//! audit trail, and the approve / reject / request-approval / move-alias forms — shown by role,
//! refused by the server exactly as the API refuses them (role, creator, CSRF, protected alias),
//! and leaving the registry untouched when refused.

#![allow(clippy::unwrap_used)] // a test that cannot set up should fail loudly

mod dashboard_common;

use axum::http::StatusCode;
use dashboard_common::{start, start_anonymous, Browser, Harness, Page};
use weir_registry::store::{NewVersion, VersionFile};
use weir_tracking::store::NewRun;

const V1: &str = "/ui/models/iris/versions/1";
const V2: &str = "/ui/models/iris/versions/2";
const V3: &str = "/ui/models/iris/versions/3";

/// What each form posts to, for version 1.
const APPROVE_V1: &str = "/ui/models/iris/versions/1/approve";
const REJECT_V1: &str = "/ui/models/iris/versions/1/reject";
const REQUEST_V1: &str = "/ui/models/iris/versions/1/request-approval";
const ALIASES: &str = "/ui/models/iris/aliases";

/// A version weir can serve (an ONNX file recorded at registration).
fn servable(run_id: &str) -> NewVersion {
    NewVersion {
        source: "mlflow-artifacts:/1/models/m-1/artifacts".into(),
        run_id: run_id.into(),
        sha256: "ab".repeat(32),
        files: vec![VersionFile {
            path: "model.onnx".into(),
            sha256: "cd".repeat(32),
            size: 3,
        }],
        ..NewVersion::default()
    }
}

/// `iris`: v1 by sam (registered from a run of this server), v2 by cody (who also approves),
/// v3 by sam from a source weir cannot serve (and a run it does not know).
async fn seed(harness: &Harness) -> String {
    let tracking = &harness.stores.tracking.store;
    let run = tracking
        .create_run(&NewRun {
            experiment_id: "0".into(),
            user_id: "sam".into(),
            run_name: "train".into(),
            ..NewRun::default()
        })
        .unwrap();
    let run_id = run.info.run_id.clone();
    let store = &harness.stores.registry.store;
    store
        .create_registered_model("sam", "iris", "flowers <b>classifier</b>", &[])
        .unwrap();
    store
        .create_model_version("sam", "iris", &servable(&run_id))
        .unwrap();
    store
        .create_model_version("cody", "iris", &servable(""))
        .unwrap();
    let elsewhere = NewVersion {
        source: "s3://elsewhere/model".into(),
        run_id: "not-a-run-here".into(),
        ..NewVersion::default()
    };
    store
        .create_model_version("sam", "iris", &elsewhere)
        .unwrap();
    run_id
}

/// Whether a page shows `text`; auto-escaping writes `/` and `'` as character references,
/// which a browser reads as the characters.
fn shows(page: &Page, text: &str) -> bool {
    page.body
        .replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .contains(text)
}

fn has_form(page: &Page, action: &str) -> bool {
    shows(page, &format!("action=\"{action}\"")) || shows(page, &format!("formaction=\"{action}\""))
}

fn approved_by(harness: &Harness, version: &str) -> Vec<String> {
    harness
        .stores
        .registry
        .store
        .approval_status("iris", version)
        .unwrap()
        .approved_by
}

fn alias(harness: &Harness, alias: &str) -> Option<String> {
    harness
        .stores
        .registry
        .store
        .get_version_by_alias("iris", alias)
        .ok()
        .map(|v| v.version)
}

/// Audit entries of `iris` with `action`.
fn audited(harness: &Harness, action: &str) -> usize {
    harness
        .stores
        .registry
        .store
        .audit(Some("iris"), Some(action), None, 100)
        .unwrap()
        .len()
}

#[tokio::test]
async fn every_models_page_answers_each_role_with_only_its_forms() {
    let harness = start("models-roles").await;
    seed(&harness).await;
    // (who, sees approve/reject on sam's v1, sees request-approval, sees move-alias)
    for (who, decide, request, move_alias) in [
        ("rita", false, false, false),
        ("sam", false, true, false),
        ("avery", true, false, true),
        ("ada", true, true, true),
        ("cody", true, true, true),
    ] {
        let mut browser = Browser::signed_in(&harness, who).await;
        let list = browser.get("/ui/models").await;
        assert_eq!(list.status, StatusCode::OK, "{who}: {}", list.body);
        assert!(shows(&list, "href=\"/ui/models/iris\""), "{who}");
        // User text is escaped, never markup.
        assert!(
            shows(&list, "flowers &lt;b&gt;classifier&lt;/b&gt;"),
            "{who}"
        );

        let model = browser.get("/ui/models/iris").await;
        assert_eq!(model.status, StatusCode::OK, "{who}: {}", model.body);
        for v in [V1, V2, V3] {
            assert!(shows(&model, &format!("href=\"{v}\"")), "{who}: {v}");
        }

        let page = browser.get(V1).await;
        assert_eq!(page.status, StatusCode::OK, "{who}: {}", page.body);
        assert!(shows(
            &page,
            "1 approval from people other than its creator (sam)"
        ));
        assert_eq!(has_form(&page, APPROVE_V1), decide, "{who} approve");
        assert_eq!(has_form(&page, REJECT_V1), decide, "{who} reject");
        assert_eq!(has_form(&page, REQUEST_V1), request, "{who} request");
        assert_eq!(has_form(&page, ALIASES), move_alias, "{who} alias");
        // Every form a page shows carries the session's CSRF token.
        if decide || request || move_alias {
            assert!(page.csrf().is_some(), "{who}");
        }
    }
}

#[tokio::test]
async fn the_creator_sees_why_not_a_button_and_a_forged_approval_changes_nothing() {
    let harness = start("models-creator").await;
    seed(&harness).await;
    let mut cody = Browser::signed_in(&harness, "cody").await;
    let page = cody.get(V2).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !has_form(&page, "/ui/models/iris/versions/2/approve"),
        "{}",
        page.body
    );
    assert!(!has_form(&page, "/ui/models/iris/versions/2/reject"));
    assert!(shows(&page, "You created this version"), "{}", page.body);
    // Still theirs to ask about and to alias (an unprotected alias).
    assert!(has_form(
        &page,
        "/ui/models/iris/versions/2/request-approval"
    ));

    let before = audited(&harness, "approve");
    let refused = cody
        .post(
            "/ui/models/iris/versions/2/approve",
            &[("comment", "my own")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        shows(
            &refused,
            "cody created version 2 of 'iris' and cannot approve it"
        ),
        "{}",
        refused.body
    );
    // The version page comes back, and the registry is as it was.
    assert!(shows(&refused, "<h1>iris v2"), "{}", refused.body);
    assert!(approved_by(&harness, "2").is_empty());
    assert_eq!(audited(&harness, "approve"), before);

    // The same person may approve someone else's version.
    cody.get(V1).await;
    let done = cody.post(APPROVE_V1, &[("comment", "")]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(approved_by(&harness, "1"), ["cody"]);
}

#[tokio::test]
async fn forms_without_the_session_csrf_token_are_refused_and_change_nothing() {
    let harness = start("models-csrf").await;
    seed(&harness).await;
    let mut avery = Browser::signed_in(&harness, "avery").await;
    avery.get(V1).await;
    for fields in [
        vec![("comment", "ok")],
        vec![("comment", "ok"), ("csrf", "0000")],
    ] {
        let forged = avery.post_raw(APPROVE_V1, &fields).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
        let mut alias_fields = fields.clone();
        alias_fields.extend([("alias", "staging"), ("version", "1")]);
        let forged = avery.post_raw(ALIASES, &alias_fields).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    }
    // Another session's token is not this one's.
    let mut other = Browser::signed_in(&harness, "cody").await;
    other.get(V1).await;
    let foreign = other.csrf().unwrap().to_owned();
    let forged = avery
        .post_raw(REJECT_V1, &[("csrf", foreign.as_str()), ("comment", "no")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);

    let status = harness
        .stores
        .registry
        .store
        .approval_status("iris", "1")
        .unwrap();
    assert!(status.approved_by.is_empty() && status.rejected_by.is_empty());
    assert_eq!(alias(&harness, "staging"), None);
    assert_eq!(
        audited(&harness, "approve") + audited(&harness, "reject"),
        0
    );
}

#[tokio::test]
async fn a_role_the_viewer_lacks_is_refused_even_when_the_form_is_posted_by_hand() {
    let harness = start("models-role-posts").await;
    seed(&harness).await;
    for (who, path, fields) in [
        ("rita", APPROVE_V1, vec![("comment", "x")]),
        ("rita", REQUEST_V1, vec![("comment", "x")]),
        ("sam", APPROVE_V1, vec![("comment", "x")]),
        ("sam", REJECT_V1, vec![("comment", "x")]),
        ("sam", ALIASES, vec![("alias", "staging"), ("version", "1")]),
        ("avery", REQUEST_V1, vec![("comment", "x")]),
    ] {
        let mut browser = Browser::signed_in(&harness, who).await;
        browser.get(V1).await;
        let refused = browser.post(path, &fields).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{who} {path}: {}",
            refused.body
        );
    }
    let status = harness
        .stores
        .registry
        .store
        .approval_status("iris", "1")
        .unwrap();
    assert!(status.approved_by.is_empty() && status.rejected_by.is_empty());
    assert!(status.requested_by.is_empty());
    assert_eq!(alias(&harness, "staging"), None);
}

#[tokio::test]
async fn unknown_models_and_versions_are_404_pages() {
    let harness = start("models-404").await;
    seed(&harness).await;
    let mut avery = Browser::signed_in(&harness, "avery").await;
    for path in [
        "/ui/models/nope",
        "/ui/models/nope/versions/1",
        "/ui/models/iris/versions/99",
        "/ui/models/iris/versions/0",
        "/ui/models/iris/versions/abc",
    ] {
        let page = avery.get(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.body);
        assert!(shows(&page, "<h1>404"), "{path}: {}", page.body);
    }
    avery.get(V1).await;
    for path in [
        "/ui/models/iris/versions/99/approve",
        "/ui/models/iris/versions/abc/reject",
        "/ui/models/nope/versions/1/approve",
    ] {
        let page = avery.post(path, &[("comment", "x")]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.body);
    }
    let page = avery
        .post(
            "/ui/models/nope/aliases",
            &[("alias", "staging"), ("version", "1")],
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
    // A bad page offset is the caller's mistake.
    let page = avery.get("/ui/models?offset=ten").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_protected_alias_on_an_unapproved_or_unservable_version_is_refused_with_the_store_message(
) {
    let harness = start("models-protected").await;
    seed(&harness).await;
    let mut avery = Browser::signed_in(&harness, "avery").await;
    avery.get(V1).await;
    let refused = avery
        .post(ALIASES, &[("alias", "production"), ("version", "1")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        shows(
            &refused,
            "alias 'production' is protected and version 1 of 'iris' is not approved"
        ),
        "{}",
        refused.body
    );
    // The version page again, with the alias typed kept.
    assert!(shows(&refused, "value=\"production\""), "{}", refused.body);
    assert_eq!(alias(&harness, "production"), None);

    // Approving a version weir cannot serve is refused as the API refuses it (400).
    avery.get(V3).await;
    let refused = avery
        .post("/ui/models/iris/versions/3/approve", &[("comment", "")])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        shows(&refused, "cannot approve version 3"),
        "{}",
        refused.body
    );
    assert!(approved_by(&harness, "3").is_empty());
    // A reserved alias name is the store's 400 too.
    let refused = avery
        .post(ALIASES, &[("alias", "latest"), ("version", "3")])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    // An unprotected alias may point anywhere.
    let moved = avery
        .post(ALIASES, &[("alias", "staging"), ("version", "3")])
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);
    assert_eq!(moved.location(), Some(V3));
    assert_eq!(alias(&harness, "staging").as_deref(), Some("3"));
}

#[tokio::test]
async fn approve_then_move_production_and_the_audit_trail_shows_both() {
    let harness = start("models-approve").await;
    seed(&harness).await;
    let mut sam = Browser::signed_in(&harness, "sam").await;
    sam.get(V1).await;
    let asked = sam.post(REQUEST_V1, &[("comment", "ready for prod")]).await;
    assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.body);
    assert_eq!(asked.location(), Some(V1));

    let mut avery = Browser::signed_in(&harness, "avery").await;
    let page = avery.get(V1).await;
    assert!(shows(&page, "ready for prod"), "{}", page.body);
    let approved = avery.post(APPROVE_V1, &[("comment", "metrics <ok>")]).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    assert_eq!(approved.location(), Some(V1));
    assert_eq!(approved_by(&harness, "1"), ["avery"]);

    let page = avery.get(V1).await;
    assert!(shows(&page, "badge ok\">approved"), "{}", page.body);
    assert!(shows(&page, "metrics &lt;ok&gt;"), "{}", page.body);

    let moved = avery
        .post(ALIASES, &[("alias", "production"), ("version", "1")])
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);
    assert_eq!(moved.location(), Some(V1));
    assert_eq!(alias(&harness, "production").as_deref(), Some("1"));

    // The reader sees the whole story.
    let mut rita = Browser::signed_in(&harness, "rita").await;
    let page = rita.get(V1).await;
    let audit = &page.body[page.body.find("<h2>Audit trail</h2>").unwrap()..];
    for expected in [
        "set_alias",
        "production=1",
        "approve",
        "avery",
        "request",
        "sam",
    ] {
        assert!(audit.contains(expected), "{expected}: {audit}");
    }
    let model = rita.get("/ui/models/iris").await;
    assert!(shows(&model, "production → v1"), "{}", model.body);
    assert!(shows(&model, "set_alias"), "{}", model.body);
}

#[tokio::test]
async fn a_rejection_blocks_the_protected_alias_until_withdrawn() {
    let harness = start("models-reject").await;
    seed(&harness).await;
    let mut ada = Browser::signed_in(&harness, "ada").await;
    ada.get(V1).await;
    let rejected = ada.post(REJECT_V1, &[("comment", "drift")]).await;
    assert_eq!(rejected.status, StatusCode::SEE_OTHER, "{}", rejected.body);
    let mut avery = Browser::signed_in(&harness, "avery").await;
    avery.get(V1).await;
    assert_eq!(
        avery.post(APPROVE_V1, &[]).await.status,
        StatusCode::SEE_OTHER
    );
    let page = avery.get(V1).await;
    assert!(shows(&page, "badge bad\">rejected"), "{}", page.body);
    assert!(shows(&page, "drift"));
    let refused = avery
        .post(ALIASES, &[("alias", "production"), ("version", "1")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(shows(&refused, "rejected by ada"), "{}", refused.body);
    assert_eq!(alias(&harness, "production"), None);
}

#[tokio::test]
async fn versions_link_their_source_run_only_when_it_is_a_run_of_this_server() {
    let harness = start("models-runs").await;
    let run_id = seed(&harness).await;
    let mut rita = Browser::signed_in(&harness, "rita").await;
    let link = format!("href=\"/ui/experiments/0/runs/{run_id}\"");
    let page = rita.get(V1).await;
    assert!(shows(&page, &link), "{}", page.body);
    assert!(shows(&page, &format!("sha256:{}", "ab".repeat(32))));
    let page = rita.get(V3).await;
    assert!(shows(&page, "not-a-run-here"));
    assert!(!shows(&page, "/ui/experiments/"), "{}", page.body);
    let model = rita.get("/ui/models/iris").await;
    assert!(shows(&model, &link), "{}", model.body);
}

#[tokio::test]
async fn names_that_need_encoding_make_working_links() {
    let harness = start("models-names").await;
    let store = &harness.stores.registry.store;
    let name = "fraud model #2 <x>?";
    store.create_registered_model("sam", name, "", &[]).unwrap();
    store
        .create_model_version("sam", name, &servable(""))
        .unwrap();
    let mut rita = Browser::signed_in(&harness, "rita").await;
    let list = rita.get("/ui/models?q=FRAUD").await;
    let href = "/ui/models/fraud%20model%20%232%20%3Cx%3E%3F";
    assert!(shows(&list, &format!("href=\"{href}\"")), "{}", list.body);
    let model = rita.get(href).await;
    assert_eq!(model.status, StatusCode::OK, "{}", model.body);
    let version = rita.get(&format!("{href}/versions/1")).await;
    assert_eq!(version.status, StatusCode::OK, "{}", version.body);
    assert!(shows(&version, "fraud model #2 &lt;x&gt;?"));
    // A search matching nothing says so.
    let none = rita.get("/ui/models?q=zebra").await;
    assert!(!shows(&none, href));
}

#[tokio::test]
async fn without_identities_actions_name_who_acts_and_the_creator_rule_still_holds() {
    let harness = start_anonymous("models-anonymous").await;
    seed(&harness).await;
    let mut browser = Browser::new(&harness);
    let page = browser.get(V1).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(has_form(&page, APPROVE_V1) && has_form(&page, ALIASES));
    assert!(shows(&page, "name=\"as\""), "{}", page.body);

    let nameless = browser.post(APPROVE_V1, &[("comment", "")]).await;
    assert_eq!(
        nameless.status,
        StatusCode::BAD_REQUEST,
        "{}",
        nameless.body
    );
    let as_creator = browser.post(APPROVE_V1, &[("as", "sam")]).await;
    assert_eq!(
        as_creator.status,
        StatusCode::FORBIDDEN,
        "{}",
        as_creator.body
    );
    assert!(approved_by(&harness, "1").is_empty());

    let done = browser.post(APPROVE_V1, &[("as", "avery")]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(approved_by(&harness, "1"), ["avery"]);
}
