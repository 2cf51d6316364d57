//! What container listings show for the sidecar's stand-ins (a cross-cluster SLO manifest
//! stored as a plain object): Swift lists a real SLO with its total size and `slo_etag`, from
//! `swift_bytes` and etag parameters clients may not set. The sidecar puts the same facts into
//! the stand-in's Content-Type as parameters Swift accepts from clients ([`SLO_BYTES`],
//! [`SLO_ETAG`]), reads them back into listings, and strips them wherever the stand-in's
//! headers reach a client.

use http::header::{self, HeaderMap, HeaderValue};

use crate::pyformat::{dumps, Object};

/// The SLO's total size, as Swift's `swift_bytes` (refused from clients: `swift_*`).
pub const SLO_BYTES: &str = "swiftfed_slo_bytes";
/// The SLO's ETag, as Swift's `slo_etag` listing field.
pub const SLO_ETAG: &str = "swiftfed_slo_etag";

/// `content_type` with the listing facts of an SLO of `total` bytes and ETag `etag` (any
/// earlier ones replaced).
pub fn with_slo(content_type: &str, total: u64, etag: &str) -> String {
    format!("{};{SLO_BYTES}={total};{SLO_ETAG}={etag}", clean(content_type).0)
}

/// `content_type` without the sidecar's parameters, and the SLO's size and ETag they held.
pub fn clean(content_type: &str) -> (String, Option<(u64, String)>) {
    let mut parts = content_type.split(';');
    let mut kept = parts.next().unwrap_or("").to_string();
    let (mut bytes, mut etag) = (None, None);
    for p in parts {
        match p.trim().split_once('=') {
            Some((SLO_BYTES, v)) => bytes = v.parse::<u64>().ok(),
            Some((SLO_ETAG, v)) => etag = Some(v.to_string()),
            _ => {
                kept.push(';');
                kept.push_str(p);
            }
        }
    }
    (kept, bytes.zip(etag))
}

/// A stand-in's headers as a client sees them: Content-Type without the sidecar's parameters.
pub fn strip_headers(headers: &mut HeaderMap) {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let (kept, _) = clean(value);
    if kept.len() != value.len() {
        if let Ok(v) = HeaderValue::from_str(&kept) {
            headers.insert(header::CONTENT_TYPE, v);
        }
    }
}

/// A JSON container listing record as Swift lists the real thing the stand-in stands for;
/// whether it changed.
pub fn listing_record(record: &mut Object) -> bool {
    let Some(content_type) = record.get("content_type").and_then(|v| v.as_str()) else {
        return false;
    };
    let (kept, slo) = clean(content_type);
    if kept.len() == content_type.len() {
        return false;
    }
    record.set("content_type", kept);
    if let Some((bytes, etag)) = slo {
        record.set("bytes", bytes);
        // Swift's SLO middleware lists it quoted, after the other fields.
        record.set("slo_etag", format!("\"{etag}\""));
    }
    true
}

/// A JSON container listing with its stand-ins shown as Swift shows the real things; `None`:
/// unchanged.
pub fn listing_back(body: &[u8]) -> Option<Vec<u8>> {
    let mut records = serde_json::from_slice::<Vec<Object>>(body).ok()?;
    let mut changed = false;
    for record in &mut records {
        changed |= listing_record(record);
    }
    changed.then(|| dumps(&records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_round_trip_and_leave_the_client_s_own() {
        let ct = with_slo("text/plain;charset=utf-8", 12, "abc");
        assert_eq!(
            ct,
            "text/plain;charset=utf-8;swiftfed_slo_bytes=12;swiftfed_slo_etag=abc"
        );
        assert_eq!(
            clean(&ct),
            ("text/plain;charset=utf-8".into(), Some((12, "abc".into())))
        );
        assert_eq!(with_slo(&ct, 3, "d"), with_slo("text/plain;charset=utf-8", 3, "d"));
        assert_eq!(clean("text/plain").0, "text/plain");
    }

    #[test]
    fn a_listing_record_shows_the_slo() {
        let body = br#"[{"hash": "h", "last_modified": "t", "bytes": 9, "name": "m", "content_type": "a/b;swiftfed_slo_bytes=20;swiftfed_slo_etag=e"}]"#;
        let out = listing_back(body).expect("changed");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            r#"[{"hash": "h", "last_modified": "t", "bytes": 20, "name": "m", "content_type": "a/b", "slo_etag": "\"e\""}]"#
        );
        assert!(listing_back(br#"[{"name": "x", "content_type": "a/b"}]"#).is_none());
    }
}
