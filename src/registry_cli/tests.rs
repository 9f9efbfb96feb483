//! Start-up refusals of `weir registry`. The route × caller tests live with the server, in
//! weir-mlflow-server's tests/access.rs.

use super::*;

use weir_mlflow_wire::Identities;

const IDENTITIES: &str = r#"
[[user]]
name = "ada"
token = "admin-token"
roles = ["admin"]
"#;

#[test]
fn only_loopback_may_go_without_identities_unless_told() {
    let anonymous = Authenticator::anonymous();
    let verified = Authenticator::with_identities(Identities::parse(IDENTITIES).unwrap());
    for host in ["127.0.0.1", "localhost", "::1", "127.0.0.2"] {
        assert!(
            refuse_open_exposure(host, &anonymous, false).is_ok(),
            "{host}"
        );
    }
    for host in ["0.0.0.0", "10.1.2.3", "::", "registry.example"] {
        let refused = refuse_open_exposure(host, &anonymous, false).unwrap_err();
        assert!(
            refused.to_string().contains("--allow-anonymous"),
            "{refused}"
        );
        assert!(refuse_open_exposure(host, &anonymous, true).is_ok());
        assert!(refuse_open_exposure(host, &verified, false).is_ok());
    }
}
