//! Ports chosen before the parts start: the registry starts first but must already know where
//! the router's admin API and the autoscaler's metrics will answer (its dashboard watches
//! them), so a port left to the system (0) is picked here and handed to the part.

/// `wanted`, or when it is 0 a port free on 127.0.0.1 now: bound and released at once so the
/// part started with it can take it (another process could take it in between; the part then
/// fails to start and says which port).
pub(super) fn pick(wanted: u16) -> anyhow::Result<u16> {
    if wanted != 0 {
        return Ok(wanted);
    }
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|err| anyhow::anyhow!("cannot find a free port on 127.0.0.1: {err}"))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_fixed_port_is_kept_and_zero_becomes_a_free_one() {
        assert_eq!(super::pick(8001).unwrap(), 8001);
        let picked = super::pick(0).unwrap();
        assert_ne!(picked, 0);
        // Released: the part it is meant for can bind it.
        std::net::TcpListener::bind(("127.0.0.1", picked)).unwrap();
    }
}
