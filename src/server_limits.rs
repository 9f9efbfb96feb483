//! The deadline and connection-cap flags every server command shares (`serve`, `registry`,
//! `route`, `autoscale`); what they mean and why the defaults: docs/serving.md, "Deadlines and
//! limits".

use std::time::Duration;

use weir_http::server::ServerLimits;

// The durations take weir's one syntax (`500ms`, `10s`, `2m`, a bare number = seconds); the
// older `--*-secs` spellings stay as hidden aliases and the environment variables keep their
// `_SECS` names, so existing deployments keep working. The defaults are written as text for
// `--help`; a test checks they equal `ServerLimits`' constants.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerLimitsArgs {
    /// How long a client has to send a request's headers (from connecting, or from the first
    /// byte of a later request on a kept-alive connection); then the connection is closed.
    #[arg(long = "header-timeout", alias = "header-timeout-secs", env = "WEIR_HEADER_TIMEOUT_SECS", default_value = "10s", value_parser = positive_duration)]
    header_timeout: Duration,
    /// Slowest a request body may arrive, in bytes per second on average, once --body-grace
    /// has passed; a slower one is answered 408 and its connection closed. 0 turns the check
    /// off.
    #[arg(long, env = "WEIR_BODY_MIN_RATE", default_value_t = ServerLimits::DEFAULT_BODY_MIN_RATE)]
    body_min_rate: u64,
    /// How long a request body may take before --body-min-rate applies.
    #[arg(long = "body-grace", alias = "body-grace-secs", env = "WEIR_BODY_GRACE_SECS", default_value = "10s", value_parser = weir_http::duration::parse_duration_arg)]
    body_grace: Duration,
    /// How long a kept-alive connection may wait for its next request.
    #[arg(long = "idle-timeout", alias = "idle-timeout-secs", env = "WEIR_IDLE_TIMEOUT_SECS", default_value = "120s", value_parser = positive_duration)]
    idle_timeout: Duration,
    /// Open connections at most; more are answered 503 and closed at once. Keep it below the
    /// open-file limit (`ulimit -n`).
    #[arg(long, env = "WEIR_MAX_CONNECTIONS", default_value_t = ServerLimits::DEFAULT_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Open connections one client address (an IPv6 /64) may hold [default: a quarter of
    /// --max-connections]. Raise it to --max-connections when every client comes through one
    /// proxy.
    #[arg(long, env = "WEIR_MAX_CONNECTIONS_PER_PEER", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections_per_peer: Option<usize>,
}

/// A deadline of zero would close every connection at once, so it is refused rather than
/// taken literally.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match weir_http::duration::parse_duration_arg(text)? {
        Duration::ZERO => Err(format!("'{text}' is not allowed: it must be more than 0")),
        positive => Ok(positive),
    }
}

impl ServerLimitsArgs {
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            header_read_timeout: self.header_timeout,
            body_min_rate: self.body_min_rate,
            body_grace: self.body_grace,
            idle_keep_alive_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            max_connections_per_peer: self
                .max_connections_per_peer
                .unwrap_or_else(|| ServerLimits::default_share(self.max_connections)),
        }
    }

    /// A listener's server with these limits.
    pub fn server(&self) -> weir_http::server::Server {
        weir_http::server::Server::new(self.limits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        limits: ServerLimitsArgs,
    }

    #[test]
    fn defaults_are_the_documented_ones_and_the_share_follows_the_cap() {
        let parsed = Command::try_parse_from(["x"]).unwrap();
        assert_eq!(parsed.limits.limits(), ServerLimits::default());
        let parsed = Command::try_parse_from(["x", "--max-connections", "100"]).unwrap();
        assert_eq!(parsed.limits.limits().max_connections_per_peer, 25);
        let parsed = Command::try_parse_from([
            "x",
            "--header-timeout-secs",
            "2",
            "--body-min-rate",
            "0",
            "--body-grace-secs",
            "3",
            "--idle-timeout-secs",
            "4",
            "--max-connections",
            "32",
            "--max-connections-per-peer",
            "16",
        ])
        .unwrap();
        assert_eq!(
            parsed.limits.limits(),
            ServerLimits {
                header_read_timeout: Duration::from_secs(2),
                body_min_rate: 0,
                body_grace: Duration::from_secs(3),
                idle_keep_alive_timeout: Duration::from_secs(4),
                max_connections: 32,
                max_connections_per_peer: 16,
            }
        );
    }

    #[test]
    fn durations_take_the_one_syntax_under_new_and_old_names() {
        let parsed = Command::try_parse_from([
            "x",
            "--header-timeout",
            "500ms",
            "--body-grace",
            "2m",
            "--idle-timeout",
            "1h",
        ])
        .unwrap()
        .limits
        .limits();
        assert_eq!(parsed.header_read_timeout, Duration::from_millis(500));
        assert_eq!(parsed.body_grace, Duration::from_secs(120));
        assert_eq!(parsed.idle_keep_alive_timeout, Duration::from_secs(3600));
        // The old names still parse, and take the new syntax too.
        let parsed =
            Command::try_parse_from(["x", "--header-timeout-secs", "3s", "--body-grace-secs", "0"])
                .unwrap()
                .limits
                .limits();
        assert_eq!(parsed.header_read_timeout, Duration::from_secs(3));
        assert_eq!(parsed.body_grace, Duration::ZERO);
        let error = Command::try_parse_from(["x", "--idle-timeout", "soon"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("'soon' is not a duration"), "{error}");
    }

    #[test]
    fn help_shows_the_new_names_with_duration_defaults() {
        use clap::CommandFactory;
        let help = Command::command().render_long_help().to_string();
        for shown in [
            "--header-timeout <",
            "[default: 10s]",
            "[default: 120s]",
            "--body-grace <",
        ] {
            assert!(help.contains(shown), "{shown} missing from:\n{help}");
        }
        assert!(
            !help.contains("-secs"),
            "old names are hidden aliases:\n{help}"
        );
    }

    #[test]
    fn zero_deadlines_and_caps_are_refused() {
        for flag in [
            "--header-timeout",
            "--header-timeout-secs",
            "--idle-timeout",
            "--idle-timeout-secs",
            "--max-connections",
            "--max-connections-per-peer",
        ] {
            assert!(
                Command::try_parse_from(["x", flag, "0"]).is_err(),
                "{flag} 0 must be refused"
            );
        }
    }
}
