use super::*;

use axum::http::HeaderValue;

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn user(name: &str, token: &str) -> String {
    format!("[[user]]\nname = \"{name}\"\ntoken = \"{token}\"\nroles = [\"reader\"]\n")
}

#[tokio::test]
async fn a_changed_file_is_followed_and_a_broken_one_keeps_what_is_in_force() {
    let folder = std::env::temp_dir().join(format!("weir-reload-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join("identities.toml");
    std::fs::write(&path, user("alice", "one")).unwrap();
    let authenticator = Authenticator::from_file(&path).unwrap();
    let watcher = authenticator
        .watch(path.clone(), Duration::from_millis(20))
        .unwrap();
    let name = |token: &str| authenticator.authenticate(&bearer(token)).map(|i| i.name);
    assert_eq!(name("one").as_deref(), Ok("alice"));

    std::fs::write(&path, user("alice", "one") + &user("bob", "two")).unwrap();
    let mut waited = 0;
    while name("two").is_err() {
        assert!(waited < 1000, "the new identity was never loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(name("two").as_deref(), Ok("bob"));

    // Half a file: nothing changes, for as long as it stays broken.
    std::fs::write(&path, "[[user]]\nname = \"carol\"\ntoken = ").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(name("one").as_deref(), Ok("alice"));
    assert_eq!(name("two").as_deref(), Ok("bob"));

    std::fs::write(&path, user("carol", "three")).unwrap();
    while name("one").is_ok() {
        assert!(waited < 2000, "the removed identity was never dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(name("three").as_deref(), Ok("carol"));
    watcher.abort();
    let _ = std::fs::remove_dir_all(&folder);
}

#[test]
fn missing_and_invalid_credentials_are_told_apart() {
    let authenticator =
        Authenticator::with_identities(Identities::parse(&user("alice", "one")).unwrap());
    assert_eq!(
        authenticator.authenticate(&HeaderMap::new()),
        Err(Unauthenticated::Missing)
    );
    assert_eq!(
        authenticator.authenticate(&bearer("two")),
        Err(Unauthenticated::Invalid)
    );
    let mut digest = HeaderMap::new();
    digest.insert(header::AUTHORIZATION, HeaderValue::from_static("Digest x"));
    assert_eq!(
        authenticator.authenticate(&digest),
        Err(Unauthenticated::Malformed)
    );
    // Without identities the same headers name the caller, with every role.
    let open = Authenticator::anonymous();
    let mut named = HeaderMap::new();
    named.insert("x-weir-user", HeaderValue::from_static("dana"));
    let dana = open.authenticate(&named).unwrap();
    assert_eq!(dana.name, "dana");
    assert!(dana.holds(crate::Role::Admin));
    assert_eq!(
        open.authenticate(&HeaderMap::new()).unwrap().name,
        "anonymous"
    );
}

#[test]
fn a_missing_file_is_named_in_the_error() {
    let missing = std::path::Path::new("/nonexistent/identities.toml");
    let message = Authenticator::from_file(missing).err().unwrap().to_string();
    assert!(
        message.contains("/nonexistent/identities.toml"),
        "{message}"
    );
}
