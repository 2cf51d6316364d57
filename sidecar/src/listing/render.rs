//! Listings rendered as Swift's listing filter renders them from JSON.

use crate::pyformat::{dumps as swift_json, xml_escape, Object as Record};

use super::params::Format;

/// Whose listing is rendered: an account's (of containers) or a container's (of objects).
#[derive(Clone, Copy)]
pub(super) enum Listing<'n> {
    Account(&'n str),
    Container(&'n str),
}

/// The listing as Swift's listing filter renders it from JSON.
pub(super) fn render(format: Format, listing: Listing<'_>, records: &[Record]) -> Vec<u8> {
    match format {
        Format::Json => swift_json(records),
        Format::Plain => {
            let mut out = Vec::new();
            for r in records {
                if let Some(n) = r.name().or(r.subdir()) {
                    out.extend_from_slice(n.as_bytes());
                    out.push(b'\n');
                }
            }
            out
        }
        Format::Xml(_) => {
            let (root, item, fields, optional, newline): (_, _, &[&str], &[&str], _) = match listing
            {
                Listing::Account(_) => (
                    "account",
                    "container",
                    &["name", "count", "bytes", "last_modified"],
                    &["storage_policy"],
                    "\n",
                ),
                Listing::Container(_) => (
                    "container",
                    "object",
                    &["name", "hash", "bytes", "content_type", "last_modified"],
                    &[],
                    "",
                ),
            };
            let (Listing::Account(name) | Listing::Container(name)) = listing;
            let mut out = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} name=\"{}\"",
                xml_escape(name, true)
            );
            if records.is_empty() && newline.is_empty() {
                out.push_str(" />");
                return out.into_bytes();
            }
            out.push('>');
            out.push_str(newline);
            for r in records {
                if let Some(dir) = r.subdir() {
                    let attr = xml_escape(dir, true);
                    match listing {
                        Listing::Account(_) => out.push_str(&format!("<subdir name=\"{attr}\" />")),
                        Listing::Container(_) => out.push_str(&format!(
                            "<subdir name=\"{attr}\"><name>{}</name></subdir>",
                            xml_escape(dir, false)
                        )),
                    }
                    out.push_str(newline);
                    continue;
                }
                out.push_str(&format!("<{item}>"));
                let present = optional.iter().filter(|f| r.get(f).is_some());
                for tag in fields.iter().chain(present) {
                    let text = match r.get(tag) {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(serde_json::Value::Null) | None => "None".into(),
                        Some(other) => other.to_string(),
                    };
                    out.push_str(&format!("<{tag}>{}</{tag}>", xml_escape(&text, false)));
                }
                out.push_str(&format!("</{item}>{newline}"));
            }
            out.push_str(&format!("</{root}>"));
            out.into_bytes()
        }
    }
}
