//! The one rule for "this address is only reachable from this machine", shared by every server
//! that refuses to listen beyond loopback without credentials (serve, route, registry).

use std::net::IpAddr;

/// True for `localhost`, any 127.0.0.0/8 address and `::1` (bracketed or not, and as the
/// IPv4-mapped `::ffff:127.x.y.z`). Everything else, including `0.0.0.0`, `::` and host names
/// other than `localhost`, is reachable from elsewhere as far as a server can tell.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn only_loopback_addresses_are_loopback() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "0.0.0.0",
            "::",
            "[::]",
            "10.0.0.1",
            "128.0.0.1",
            "localhost.example.com",
            "example.com",
            "",
            "127.0.0.1:80",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
