use super::*;

fn sha256_hex(text: &str) -> String {
    token_digest(text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn users_with_tokens_or_digests_and_the_old_tokens_table_all_authenticate() {
    let file = format!(
        r#"
        [[user]]
        name = "alice"
        token = "alice-token"
        roles = ["reader", "submitter"]

        [[user]]
        name = "carol"
        token_sha256 = "{}"
        roles = ["admin"]

        [tokens]
        "legacy-token" = "bob"
        "#,
        sha256_hex("carol-token")
    );
    let identities = Identities::parse(&file).unwrap();
    assert_eq!(identities.len(), 3);
    let alice = identities.find("alice-token").unwrap();
    assert_eq!(alice.name, "alice");
    assert!(alice.holds(Role::Reader) && alice.holds(Role::Submitter));
    assert!(!alice.holds(Role::Approver) && !alice.holds(Role::Admin));
    let carol = identities.find("carol-token").unwrap();
    assert!(Role::ALL.iter().all(|role| carol.holds(*role)));
    let bob = identities.find("legacy-token").unwrap();
    assert_eq!(bob.name, "bob");
    assert!(bob.holds(Role::Approver) && !bob.holds(Role::Admin));
    assert!(identities.find("guess").is_none());
    assert!(identities.find("").is_none());
    assert!(identities.find("alice-token ").is_none());
}

#[test]
fn a_name_may_hold_two_tokens_while_one_is_rotated_out() {
    let identities = Identities::parse(
        r#"
        [[user]]
        name = "ci"
        token = "old"
        roles = ["submitter"]
        [[user]]
        name = "ci"
        token = "new"
        roles = ["submitter"]
        "#,
    )
    .unwrap();
    assert_eq!(identities.find("old").unwrap().name, "ci");
    assert_eq!(identities.find("new").unwrap().name, "ci");
}

#[test]
fn every_mistake_refuses_the_whole_file_without_quoting_a_token() {
    let cases = [
        ("", "names no users"),
        ("[[user]]\nname = \"a\"\nroles = [\"reader\"]\n", "give token or token_sha256"),
        (
            "[[user]]\nname = \"a\"\ntoken = \"t\"\ntoken_sha256 = \"00\"\nroles = [\"reader\"]\n",
            "not both",
        ),
        ("[[user]]\nname = \"a\"\ntoken = \"  \"\nroles = [\"reader\"]\n", "token is empty"),
        ("[[user]]\nname = \"\"\ntoken = \"t\"\nroles = [\"reader\"]\n", "name is empty"),
        ("[[user]]\nname = \"a\"\ntoken = \"t\"\nroles = []\n", "roles is empty"),
        (
            "[[user]]\nname = \"a\"\ntoken_sha256 = \"xyz\"\nroles = [\"reader\"]\n",
            "64 hexadecimal",
        ),
        (
            "[[user]]\nname = \"a\"\ntoken = \"secret-1\"\nroles = [\"superuser\"]\n",
            "unknown variant",
        ),
        (
            "[[user]]\nname = \"a\"\ntoken = \"secret-1\"\nrole = [\"reader\"]\n",
            "unknown field",
        ),
        (
            "[[user]]\nname = \"a\"\ntoken = \"secret-1\"\nroles = [\"reader\"]\n[[user]]\nname = \"b\"\ntoken = \"secret-1\"\nroles = [\"admin\"]\n",
            "share one token",
        ),
        ("[[user]\nname = \"a\"\ntoken = \"secret-1\"\n", "line 1"),
        ("[tokens]\n\"\" = \"a\"\n", "empty token or name"),
    ];
    for (text, expected) in cases {
        let message = Identities::parse(text).unwrap_err().to_string();
        assert!(message.contains(expected), "{text:?} gave {message:?}");
        assert!(!message.contains("secret-1"), "{message:?} quotes a token");
    }
}

#[test]
fn credentials_are_read_from_bearer_and_basic_headers() {
    assert_eq!(Credential::from_header(None), Credential::None);
    assert_eq!(Credential::from_header(Some("  ")), Credential::None);
    assert_eq!(
        Credential::from_header(Some("Bearer abc")),
        Credential::Bearer("abc".into())
    );
    assert_eq!(
        Credential::from_header(Some("bearer   abc ")),
        Credential::Bearer("abc".into())
    );
    // "alice:pa:ss" — the password may itself hold a colon.
    assert_eq!(
        Credential::from_header(Some("Basic YWxpY2U6cGE6c3M=")),
        Credential::Basic {
            user: "alice".into(),
            password: "pa:ss".into()
        }
    );
    for bad in ["Bearer", "Basic !!!", "Basic YWxpY2U=", "Digest x", "token"] {
        assert_eq!(
            Credential::from_header(Some(bad)),
            Credential::Malformed,
            "{bad}"
        );
    }
}
