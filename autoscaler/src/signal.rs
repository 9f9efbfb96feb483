//! Where the load comes from: the replicas' own `/metrics`, or a Prometheus query.

use std::time::Duration;

use bytes::Bytes;
use weir_http::HttpClient;

thread_local! {
    static CLIENT: HttpClient = HttpClient::default();
}

/// A GET with a 2 s limit: status and body.
pub async fn get(url: &str) -> Result<(u16, String), String> {
    let client = CLIENT.with(Clone::clone);
    let (status, body) = client
        .send("GET", url, &[], Bytes::new(), Duration::from_secs(2))
        .await
        .map_err(|reason| format!("{url}: {reason}"))?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The sum of `weir_inflight_requests` in an OpenMetrics text, for one model version or (with
/// `None`) for everything the replica serves.
pub fn inflight(metrics: &str, only: Option<(&str, &str)>) -> f64 {
    let labels = only.map(|(model, version)| {
        (
            format!("model=\"{model}\""),
            format!("version=\"{version}\""),
        )
    });
    metrics
        .lines()
        .filter(|line| line.starts_with("weir_inflight_requests{"))
        .filter(|line| {
            labels
                .as_ref()
                .is_none_or(|(m, v)| line.contains(m.as_str()) && line.contains(v.as_str()))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Requests in flight on every replica; a replica that cannot be read makes the whole sample
/// missing (a partial sum would look like less load and scale down).
pub async fn scrape(replicas: &[String], only: Option<(&str, &str)>) -> Result<f64, String> {
    let mut total = 0.0;
    for url in replicas {
        let (status, body) = get(&format!("{url}/metrics")).await?;
        if status != 200 {
            return Err(format!("{url}/metrics answered {status}"));
        }
        total += inflight(&body, only);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_sums_the_matching_series() {
        let text = "# TYPE weir_inflight_requests gauge\n\
            weir_inflight_requests{model=\"iris\",version=\"2\"} 3\n\
            weir_inflight_requests{model=\"iris\",version=\"1\"} 7\n\
            weir_inflight_requests{model=\"wine\",version=\"2\"} 9\n\
            weir_queue_depth{model=\"iris\",version=\"2\"} 100\n";
        assert_eq!(inflight(text, Some(("iris", "2"))), 3.0);
        assert_eq!(inflight(text, Some(("iris", "9"))), 0.0);
        assert_eq!(inflight(text, None), 19.0);
    }
}
