//! The deadline and connection-cap flags every server command shares (`serve`, `registry`,
//! `route`, `autoscale`); what they mean and why the defaults: docs/serving.md, "Deadlines and
//! limits".

use std::time::Duration;

use weir_http::server::ServerLimits;

#[derive(clap::Args, Debug, Clone)]
pub struct ServerLimitsArgs {
    /// Seconds a client has to send a request's headers (from connecting, or from the first
    /// byte of a later request on a kept-alive connection); then the connection is closed.
    #[arg(long, env = "WEIR_HEADER_TIMEOUT_SECS", default_value_t = ServerLimits::DEFAULT_HEADER_READ_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout_secs: u64,
    /// Slowest a request body may arrive, in bytes per second on average, once
    /// --body-grace-secs have passed; a slower one is answered 408 and its connection closed.
    /// 0 turns the check off.
    #[arg(long, env = "WEIR_BODY_MIN_RATE", default_value_t = ServerLimits::DEFAULT_BODY_MIN_RATE)]
    body_min_rate: u64,
    /// Seconds a request body may take before --body-min-rate applies.
    #[arg(long, env = "WEIR_BODY_GRACE_SECS", default_value_t = ServerLimits::DEFAULT_BODY_GRACE.as_secs())]
    body_grace_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    #[arg(long, env = "WEIR_IDLE_TIMEOUT_SECS", default_value_t = ServerLimits::DEFAULT_IDLE_KEEP_ALIVE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,
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

impl ServerLimitsArgs {
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            header_read_timeout: Duration::from_secs(self.header_timeout_secs),
            body_min_rate: self.body_min_rate,
            body_grace: Duration::from_secs(self.body_grace_secs),
            idle_keep_alive_timeout: Duration::from_secs(self.idle_timeout_secs),
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
    fn zero_deadlines_and_caps_are_refused() {
        for flag in [
            "--header-timeout-secs",
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
