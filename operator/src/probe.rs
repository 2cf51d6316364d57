//! Reachability of a target cluster, as the operator sees it: a TCP connection to any endpoint.

use std::time::Duration;

/// `Ok` when one endpoint accepts a TCP connection within `timeout`; otherwise every endpoint's
/// error.
pub async fn any_reachable(endpoints: &[String], timeout: Duration) -> Result<(), String> {
    let mut errors = Vec::new();
    for endpoint in endpoints {
        let Some(authority) = authority(endpoint) else {
            errors.push(format!("{endpoint}: not a URL"));
            continue;
        };
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&authority)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => errors.push(format!("{endpoint}: {e}")),
            Err(_) => errors.push(format!("{endpoint}: no connection within {timeout:?}")),
        }
    }
    Err(errors.join("; "))
}

/// `host:port` of a base URL, with the scheme's default port.
fn authority(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    uri.scheme_str()?;
    let host = uri.host()?;
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    Some(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn authorities_get_default_ports() {
        assert_eq!(
            super::authority("https://swift.example.com").as_deref(),
            Some("swift.example.com:443")
        );
        assert_eq!(
            super::authority("http://10.0.0.1:8080/").as_deref(),
            Some("10.0.0.1:8080")
        );
        assert_eq!(super::authority("nonsense"), None);
    }

    #[tokio::test]
    async fn reachability_reports_every_endpoint() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = format!("http://{}", listener.local_addr().expect("addr"));
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        let timeout = std::time::Duration::from_secs(2);
        assert!(super::any_reachable(&[closed.clone(), open], timeout)
            .await
            .is_ok());
        let err = super::any_reachable(std::slice::from_ref(&closed), timeout)
            .await
            .expect_err("closed");
        assert!(err.contains(&closed), "{err}");
    }
}
