//! What container listings show for the sidecar's stand-ins (a cross-cluster SLO manifest
//! stored as a plain object): Swift lists a real SLO with its total size and `slo_etag`, from
//! `swift_bytes` and etag parameters clients may not set. The sidecar puts the same facts into
//! the stand-in's Content-Type as parameters Swift accepts from clients ([`SLO_BYTES`],
//! [`SLO_ETAG`]), reads them back into listings, and strips them wherever the stand-in's
//! headers reach a client.

use http::header::{self, HeaderMap, HeaderValue};

use crate::pyformat::Object;

/// The SLO's total size, as Swift's `swift_bytes` (refused from clients: `swift_*`).
pub const SLO_BYTES: &str = "swiftfed_slo_bytes";
/// The SLO's ETag, as Swift's `slo_etag` listing field.
pub const SLO_ETAG: &str = "swiftfed_slo_etag";
/// A link's target (`<container>/<object>`, quoted, `/` as `%2F`), as Swift's `symlink_path`.
pub const LINK_TARGET: &str = "swiftfed_symlink_target";
/// A link's target account (quoted), when the client named one.
pub const LINK_ACCOUNT: &str = "swiftfed_symlink_target_account";
/// A static link's target ETag and size, as Swift's `symlink_etag` and `symlink_bytes`.
pub const LINK_ETAG: &str = "swiftfed_symlink_target_etag";
pub const LINK_BYTES: &str = "swiftfed_symlink_target_bytes";
/// Every parameter of the sidecar's starts so; a client's own are dropped.
const PREFIX: &str = "swiftfed_";

/// `content_type` with `facts` as parameters (any earlier ones of the sidecar's replaced).
pub fn with(content_type: &str, facts: &[(&str, String)]) -> String {
    let mut out = clean(content_type).0;
    for (name, value) in facts {
        out.push_str(&format!(";{name}={value}"));
    }
    out
}

/// `content_type` with the listing facts of an SLO of `total` bytes and ETag `etag`.
pub fn with_slo(content_type: &str, total: u64, etag: &str) -> String {
    with(
        content_type,
        &[(SLO_BYTES, total.to_string()), (SLO_ETAG, etag.to_string())],
    )
}

/// `content_type` without the sidecar's parameters, and those parameters.
pub fn clean(content_type: &str) -> (String, Vec<(String, String)>) {
    let mut parts = content_type.split(';');
    let mut kept = parts.next().unwrap_or("").to_string();
    let mut facts = Vec::new();
    for p in parts {
        match p.trim().split_once('=') {
            Some((k, v)) if k.starts_with(PREFIX) => facts.push((k.to_string(), v.to_string())),
            _ => {
                kept.push(';');
                kept.push_str(p);
            }
        }
    }
    (kept, facts)
}

/// A stand-in's headers as a client sees them: Content-Type without the sidecar's parameters.
pub fn strip_headers(headers: &mut HeaderMap) {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let (kept, _) = clean(value);
    if kept.len() != value.len() {
        if let Ok(v) = HeaderValue::from_str(&kept) {
            headers.insert(header::CONTENT_TYPE, v);
        }
    }
}

/// A JSON container listing record (in `account`, as the client names it) as Swift lists the
/// real thing the stand-in stands for; whether it changed.
pub fn listing_record(record: &mut Object, account: &str) -> bool {
    let Some(content_type) = record.get("content_type").and_then(|v| v.as_str()) else {
        return false;
    };
    let (kept, facts) = clean(content_type);
    if facts.is_empty() {
        return false;
    }
    let fact = |name: &str| {
        facts
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
    };
    record.set("content_type", kept);
    if let Some(bytes) = fact(SLO_BYTES).and_then(|b| b.parse::<u64>().ok()) {
        record.set("bytes", bytes);
    }
    if let Some(target) = fact(LINK_TARGET) {
        // Swift's symlink middleware: these in this order, after the other fields.
        if let Some(etag) = fact(LINK_ETAG) {
            record.set("symlink_etag", etag);
        }
        if let Some(bytes) = fact(LINK_BYTES).and_then(|b| b.parse::<u64>().ok()) {
            record.set("symlink_bytes", bytes);
        }
        let account = fact(LINK_ACCOUNT).unwrap_or_else(|| crate::symlink::quote(account));
        let target = target.replace("%2F", "/");
        record.set("symlink_path", format!("/v1/{account}/{target}"));
    }
    // Swift's SLO middleware (outside the symlink one) lists it quoted, after the others; a
    // static link to an SLO has it too.
    if let Some(etag) = fact(SLO_ETAG) {
        record.set("slo_etag", format!("\"{etag}\""));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyformat::dumps;

    /// A listing's records as the client sees them; `None`: unchanged.
    fn listing_back(body: &[u8], account: &str) -> Option<Vec<u8>> {
        let mut records = serde_json::from_slice::<Vec<Object>>(body).ok()?;
        let mut changed = false;
        for record in &mut records {
            changed |= listing_record(record, account);
        }
        changed.then(|| dumps(&records))
    }

    #[test]
    fn parameters_round_trip_and_leave_the_client_s_own() {
        let ct = with_slo("text/plain;charset=utf-8", 12, "abc");
        assert_eq!(
            ct,
            "text/plain;charset=utf-8;swiftfed_slo_bytes=12;swiftfed_slo_etag=abc"
        );
        assert_eq!(
            clean(&ct),
            (
                "text/plain;charset=utf-8".into(),
                vec![
                    (SLO_BYTES.into(), "12".into()),
                    (SLO_ETAG.into(), "abc".into())
                ]
            )
        );
        assert_eq!(
            with_slo(&ct, 3, "d"),
            with_slo("text/plain;charset=utf-8", 3, "d")
        );
        assert_eq!(clean("text/plain").0, "text/plain");
    }

    #[test]
    fn a_listing_record_shows_the_slo() {
        let body = br#"[{"hash": "h", "last_modified": "t", "bytes": 9, "name": "m", "content_type": "a/b;swiftfed_slo_bytes=20;swiftfed_slo_etag=e"}]"#;
        let out = listing_back(body, "AUTH_a").expect("changed");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"[{"hash": "h", "last_modified": "t", "bytes": 20, "name": "m", "content_type": "a/b", "slo_etag": "\"e\""}]"#
        );
        assert!(listing_back(br#"[{"name": "x", "content_type": "a/b"}]"#, "a").is_none());
    }

    #[test]
    fn a_listing_record_shows_the_link() {
        let body = br#"[{"hash": "h", "bytes": 0, "name": "l", "content_type": "a/b;swiftfed_symlink_target=c%2Fo%20x%2Fy;swiftfed_symlink_target_etag=e;swiftfed_symlink_target_bytes=3"}]"#;
        let out = listing_back(body, "AUTH a").expect("changed");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"[{"hash": "h", "bytes": 0, "name": "l", "content_type": "a/b", "symlink_etag": "e", "symlink_bytes": 3, "symlink_path": "/v1/AUTH%20a/c/o%20x/y"}]"#
        );
    }
}
