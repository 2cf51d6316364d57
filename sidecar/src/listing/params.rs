//! Listing request parameters and the answer format, read as Swift reads them.

use http::header::{self, HeaderMap};

use crate::swift_path::decode;

use super::MAX_LIMIT;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Plain,
    Json,
    Xml(&'static str),
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Plain => "text/plain; charset=utf-8",
            Format::Json => "application/json; charset=utf-8",
            Format::Xml(t) => t,
        }
    }
}

/// The client's listing parameters, decoded as Swift decodes a query string.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pub(crate) limit: usize,
    pub(crate) marker: Option<String>,
    pub(crate) end_marker: Option<String>,
    pub(crate) prefix: String,
    pub(crate) delimiter: Option<char>,
    pub(crate) reverse: bool,
    pub(crate) format: Option<String>,
}

pub(super) fn query_pairs(query: Option<&str>) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((decode(&k.replace('+', " "))?, decode(&v.replace('+', " "))?));
    }
    Some(out)
}

impl Params {
    /// `None` for anything Swift would refuse or treat specially (bad limit, long delimiter,
    /// undecodable values): such requests go to Swift unchanged, which gives its own answer.
    pub(crate) fn parse(query: Option<&str>) -> Option<Params> {
        let mut p = Params {
            limit: MAX_LIMIT,
            ..Params::default()
        };
        for (k, v) in query_pairs(query)? {
            match k.as_str() {
                "limit" => {
                    let n: usize = v.parse().ok()?;
                    if n > MAX_LIMIT {
                        return None;
                    }
                    p.limit = n;
                }
                "marker" if !v.is_empty() => p.marker = Some(v),
                "end_marker" if !v.is_empty() => p.end_marker = Some(v),
                "prefix" => p.prefix = v,
                "delimiter" if !v.is_empty() => {
                    let mut chars = v.chars();
                    let c = chars.next()?;
                    if chars.next().is_some() || c as u32 > 254 {
                        return None;
                    }
                    p.delimiter = Some(c);
                }
                "reverse" => {
                    p.reverse = matches!(
                        v.to_ascii_lowercase().as_str(),
                        "true" | "1" | "yes" | "on" | "t" | "y"
                    )
                }
                "format" => p.format = Some(v.to_ascii_lowercase()),
                _ => {}
            }
        }
        Some(p)
    }

    /// Whether `name` is inside the requested window (the order the listing runs in).
    pub(crate) fn admits(&self, name: &str) -> bool {
        if !name.starts_with(&self.prefix) {
            return false;
        }
        let (after, before) = if self.reverse {
            (&self.end_marker, &self.marker)
        } else {
            (&self.marker, &self.end_marker)
        };
        after.as_deref().is_none_or(|m| name > m) && before.as_deref().is_none_or(|m| name < m)
    }
}

/// The format the client asked for, as Swift's listing filter picks it; `None` = not
/// acceptable (Swift answers 406 itself).
pub(crate) fn pick_format(params: &Params, headers: &HeaderMap) -> Option<Format> {
    if let Some(f) = &params.format {
        return Some(match f.as_str() {
            "json" => Format::Json,
            "xml" => Format::Xml("application/xml; charset=utf-8"),
            _ => Format::Plain,
        });
    }
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Format::Plain);
    };
    let offers = [
        ("text/plain", Format::Plain),
        ("application/json", Format::Json),
        (
            "application/xml",
            Format::Xml("application/xml; charset=utf-8"),
        ),
        ("text/xml", Format::Xml("text/xml; charset=utf-8")),
    ];
    // Highest quality wins; on equal quality the more specific range, then the offer order.
    let mut best: Option<(f32, u8, usize, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        for (i, (offer, format)) in offers.iter().enumerate() {
            let (otype, _) = offer.split_once('/').unwrap_or((offer, ""));
            let specificity = if media == *offer {
                2
            } else if media == format!("{otype}/*") {
                1
            } else if media == "*/*" {
                0
            } else {
                continue;
            };
            let better = match best {
                None => true,
                Some((bq, bs, bi, _)) => {
                    q > bq || (q == bq && (specificity > bs || (specificity == bs && i < bi)))
                }
            };
            if better {
                best = Some((q, specificity, i, *format));
            }
        }
    }
    best.filter(|(q, ..)| *q > 0.0).map(|(.., f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn formats_follow_swift() {
        let p = Params::default();
        let h = |accept: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                header::ACCEPT,
                HeaderValue::from_str(accept).expect("value"),
            );
            m
        };
        assert_eq!(pick_format(&p, &HeaderMap::new()), Some(Format::Plain));
        assert_eq!(pick_format(&p, &h("application/json")), Some(Format::Json));
        assert_eq!(
            pick_format(&p, &h("text/xml")),
            Some(Format::Xml("text/xml; charset=utf-8"))
        );
        assert_eq!(pick_format(&p, &h("*/*")), Some(Format::Plain));
        assert_eq!(pick_format(&p, &h("image/png")), None);
        let json = Params {
            format: Some("json".into()),
            ..Params::default()
        };
        assert_eq!(pick_format(&json, &h("text/xml")), Some(Format::Json));
    }

    #[test]
    fn params_like_swift() {
        let p = Params::parse(Some(
            "limit=2&marker=a%20b&reverse=on&delimiter=-&prefix=x+y",
        ))
        .expect("valid");
        assert_eq!(
            (p.limit, p.marker.as_deref(), p.reverse, p.delimiter),
            (2, Some("a b"), true, Some('-'))
        );
        assert_eq!(p.prefix, "x y");
        assert!(Params::parse(Some("limit=10001")).is_none());
        assert!(Params::parse(Some("delimiter=ab")).is_none());
    }
}
