//! Keystone v3 tokens for `Credentials` auth: the token request for a password or an
//! application credential, and what Keystone's answer means. Fetching, caching, refreshing and
//! the retry on a target's 401 are the same as for tempauth (`auth::TokenSource`).
//!
//! The target's storage path is not taken from Keystone's catalog: the sidecar sends requests to
//! the cluster's `endpoints`, with the account the route names (`AUTH_<project_id>` under
//! keystoneauth), so the request body asks for no catalog (`?nocatalog`).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};
use swiftfed_crds::routing::KeystoneCredentials;

/// `POST <token_url>` with `body` gets a token. The body holds the password or secret: it is
/// never logged or shown (no `Debug`).
pub struct KeystoneLogin {
    pub token_url: String,
    body: Bytes,
}

impl KeystoneLogin {
    /// From validated credentials (one complete method; see `swiftfed_crds::validate`).
    pub fn new(c: &KeystoneCredentials) -> KeystoneLogin {
        let domain = |id: &Option<String>, name: &Option<String>| match (id, name) {
            (Some(id), _) => Some(json!({ "id": id })),
            (None, Some(name)) => Some(json!({ "name": name })),
            (None, None) => None,
        };
        let user = || {
            let mut user = serde_json::Map::new();
            match (&c.user_id, &c.user_name) {
                (Some(id), _) => {
                    user.insert("id".into(), json!(id));
                }
                (None, Some(name)) => {
                    user.insert("name".into(), json!(name));
                    if let Some(d) = domain(&c.user_domain_id, &c.user_domain_name) {
                        user.insert("domain".into(), d);
                    }
                }
                (None, None) => {}
            }
            user
        };
        let auth = match (&c.application_credential_secret, &c.password) {
            (Some(secret), _) => {
                let mut credential = serde_json::Map::new();
                match (&c.application_credential_id, &c.application_credential_name) {
                    (Some(id), _) => {
                        credential.insert("id".into(), json!(id));
                    }
                    (None, name) => {
                        credential.insert("name".into(), json!(name));
                        credential.insert("user".into(), Value::Object(user()));
                    }
                }
                credential.insert("secret".into(), json!(secret.expose()));
                json!({"identity": {
                    "methods": ["application_credential"],
                    "application_credential": credential,
                }})
            }
            (None, password) => {
                let mut user = user();
                let password = password.as_ref().map(|p| p.expose()).unwrap_or_default();
                user.insert("password".into(), json!(password));
                let project = match (&c.project_id, &c.project_name) {
                    (Some(id), _) => json!({ "id": id }),
                    (None, name) => json!({
                        "name": name,
                        "domain": domain(&c.project_domain_id, &c.project_domain_name),
                    }),
                };
                json!({
                    "identity": {"methods": ["password"], "password": {"user": user}},
                    "scope": {"project": project},
                })
            }
        };
        KeystoneLogin {
            token_url: format!("{}/auth/tokens?nocatalog", c.auth_url.trim_end_matches('/')),
            body: Bytes::from(json!({ "auth": auth }).to_string()),
        }
    }

    pub fn body(&self) -> Bytes {
        self.body.clone()
    }
}

/// The token (`X-Subject-Token`) and its lifetime (`expires_at - issued_at` from the body, so
/// a clock difference between the sidecar and Keystone does not matter).
pub fn token_from_answer(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(HeaderValue, Duration), String> {
    let token = headers
        .get("x-subject-token")
        .cloned()
        .ok_or("no X-Subject-Token in Keystone's answer")?;
    let parsed: Value =
        serde_json::from_slice(body).map_err(|e| format!("Keystone's answer is not JSON: {e}"))?;
    let time = |field: &str| {
        parsed["token"][field]
            .as_str()
            .and_then(unix_seconds)
            .ok_or_else(|| format!("Keystone's answer has no valid token.{field}"))
    };
    let life = time("expires_at")? - time("issued_at")?;
    if !life.is_finite() || life <= 0.0 {
        return Err("Keystone's token expires before it was issued".into());
    }
    Ok((token, Duration::from_secs_f64(life)))
}

/// `2026-11-25T20:14:50.000000Z` (Keystone's form; `Z` or `+00:00`) as seconds since 1970.
fn unix_seconds(text: &str) -> Option<f64> {
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: f64 = t.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hour * 3600 + minute * 60) as f64 + second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use swiftfed_crds::routing::Secret;

    #[test]
    fn timestamps() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            unix_seconds("2026-11-25T20:14:50.500000Z"),
            Some(1_795_637_690.5)
        );
        assert_eq!(
            unix_seconds("2000-02-29T00:00:00+00:00"),
            Some(951_782_400.0)
        );
        assert_eq!(unix_seconds("2026-11-25 20:14:50"), None);
        assert_eq!(unix_seconds("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn lifetime_comes_from_the_token_itself() {
        let mut headers = HeaderMap::new();
        headers.insert("x-subject-token", HeaderValue::from_static("gAAAA-token"));
        let body = br#"{"token": {"issued_at": "2026-11-25T19:00:00.000000Z",
                        "expires_at": "2026-11-25T19:00:08.000000Z"}}"#;
        let (token, life) = token_from_answer(&headers, body).expect("valid");
        assert_eq!(token, "gAAAA-token");
        assert_eq!(life, Duration::from_secs(8));
        assert!(token_from_answer(&HeaderMap::new(), body).is_err());
        assert!(token_from_answer(&headers, b"{}").is_err());
    }

    #[test]
    fn request_bodies() {
        let password = KeystoneCredentials {
            auth_url: "http://ks:5000/v3/".into(),
            user_name: Some("sidecar".into()),
            user_domain_name: Some("Default".into()),
            password: Some(Secret::new("pw")),
            project_name: Some("fed".into()),
            project_domain_id: Some("default".into()),
            ..Default::default()
        };
        let login = KeystoneLogin::new(&password);
        assert_eq!(login.token_url, "http://ks:5000/v3/auth/tokens?nocatalog");
        let body: Value = serde_json::from_slice(&login.body()).expect("json");
        assert_eq!(
            body,
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "sidecar", "domain": {"name": "Default"}, "password": "pw"}}},
                "scope": {"project": {"name": "fed", "domain": {"id": "default"}}},
            }})
        );
        let app = KeystoneCredentials {
            auth_url: "http://ks/v3".into(),
            application_credential_name: Some("fed".into()),
            user_id: Some("u1".into()),
            application_credential_secret: Some(Secret::new("s")),
            ..Default::default()
        };
        let body: Value = serde_json::from_slice(&KeystoneLogin::new(&app).body()).expect("json");
        assert_eq!(
            body,
            json!({"auth": {"identity": {
                "methods": ["application_credential"],
                "application_credential": {"name": "fed", "user": {"id": "u1"}, "secret": "s"},
            }}})
        );
    }
}
