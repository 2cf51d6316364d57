//! Swift request paths, parsed the way Swift's proxy does (`split_path(path, 1, 4, True)` on the
//! percent-decoded path), while keeping the raw bytes so that a forwarded path differs from the
//! client's only in the segments that a route renames.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// API versions Swift's proxy accepts by default (`valid_api_versions`).
const VERSIONS: [&str; 2] = ["v1", "v1.0"];

/// Prefix of the hidden container where object versioning keeps old versions of `<container>`.
pub const VERSIONS_PREFIX: &str = "\0versions\0";

/// A parsed `/v1/<account>[/<container>[/<object>]]` path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwiftPath<'a> {
    version: &'a str,
    account_raw: &'a str,
    container_raw: Option<&'a str>,
    /// Everything after the container segment, verbatim (`""`, `"/"`, `"/obj/with/slashes"`).
    tail: &'a str,
    pub account: String,
    /// `None` for account requests (`/v1/a`, `/v1/a/`, and `/v1/a//o`, which Swift treats as
    /// account requests too).
    pub container: Option<String>,
    pub has_object: bool,
}

/// Bytes Swift's `quote(name, safe='/')` leaves alone, minus `/` (we encode single segments).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn encode_segment(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// Percent-decodes a header value or path segment; `None` when the result is not UTF-8 (Swift
/// answers such requests itself with 412).
pub fn decode(raw: &str) -> Option<String> {
    percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

impl<'a> SwiftPath<'a> {
    /// `None` for anything that is not a Swift API path (`/auth/v1.0`, `/info`, `/healthcheck`,
    /// `/v2/...`) or that Swift will refuse on its own (names that do not decode to UTF-8):
    /// those go to the local proxy, which gives Swift's own answer.
    pub fn parse(raw_path: &'a str) -> Option<SwiftPath<'a>> {
        let rest = raw_path.strip_prefix('/')?;
        let (version, rest) = rest.split_once('/')?;
        if !VERSIONS.contains(&version) {
            return None;
        }
        let (account_raw, after_account) = match rest.split_once('/') {
            Some((a, r)) => (a, Some(r)),
            None => (rest, None),
        };
        let account = decode(account_raw)?;
        if account.is_empty() {
            return None;
        }
        let (container_raw, tail) = match after_account {
            None => (None, ""),
            Some(r) => match r.split_once('/') {
                Some((c, _)) => (Some(c), &r[c.len()..]),
                None => (Some(r), ""),
            },
        };
        let container = match container_raw {
            Some(raw) => Some(decode(raw)?).filter(|c| !c.is_empty()),
            None => None,
        };
        let has_object = container.is_some() && tail.len() > 1;
        Some(SwiftPath {
            version,
            account_raw,
            container_raw: container.as_ref().and(container_raw),
            tail: if container.is_some() { tail } else { "" },
            account,
            container,
            has_object,
        })
        .map(|p| p.fix_account_tail(raw_path))
    }

    /// For account requests the raw remainder (a trailing `/` or `//o`) must survive a rewrite.
    fn fix_account_tail(mut self, raw_path: &'a str) -> Self {
        if self.container.is_none() {
            let head = 1 + self.version.len() + 1 + self.account_raw.len();
            self.tail = &raw_path[head..];
        }
        self
    }

    /// The container name that decides the route: a versions container follows `<container>`.
    pub fn routing_container(&self) -> Option<&str> {
        self.container
            .as_deref()
            .map(|c| c.strip_prefix(VERSIONS_PREFIX).unwrap_or(c))
    }

    /// `/container/object` as a client names the object (decoded); `None` without an object.
    pub fn object_name(&self) -> Option<String> {
        let container = self.container.as_deref().filter(|_| self.has_object)?;
        Some(format!(
            "/{container}/{}",
            decode(self.tail.trim_start_matches('/'))?
        ))
    }

    /// The path with the account and/or the routing container renamed; untouched segments keep
    /// their original encoding.
    pub fn rewrite(&self, account: Option<&str>, routing_container: Option<&str>) -> String {
        let mut out = String::with_capacity(self.tail.len() + 64);
        out.push('/');
        out.push_str(self.version);
        out.push('/');
        match account {
            Some(a) => out.push_str(&encode_segment(a)),
            None => out.push_str(self.account_raw),
        }
        if let Some(raw) = self.container_raw {
            out.push('/');
            match (routing_container, self.container.as_deref()) {
                (Some(new), Some(old)) if old.starts_with(VERSIONS_PREFIX) => {
                    out.push_str(&encode_segment(&format!("{VERSIONS_PREFIX}{new}")))
                }
                (Some(new), _) => out.push_str(&encode_segment(new)),
                (None, _) => out.push_str(raw),
            }
        }
        out.push_str(self.tail);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &str) -> Option<(String, Option<String>, bool)> {
        SwiftPath::parse(p).map(|s| (s.account, s.container, s.has_object))
    }

    #[test]
    fn splits_like_swift() {
        let s = |x: &str| x.to_string();
        assert_eq!(parts("/v1/a"), Some((s("a"), None, false)));
        assert_eq!(parts("/v1/a/"), Some((s("a"), None, false)));
        assert_eq!(parts("/v1/a/c"), Some((s("a"), Some(s("c")), false)));
        assert_eq!(parts("/v1/a/c/"), Some((s("a"), Some(s("c")), false)));
        assert_eq!(parts("/v1/a/c/o"), Some((s("a"), Some(s("c")), true)));
        assert_eq!(
            parts("/v1/a/c/o/with/slashes/"),
            Some((s("a"), Some(s("c")), true))
        );
        assert_eq!(parts("/v1/a//o"), Some((s("a"), None, false)));
        assert_eq!(parts("/v1.0/a/c"), Some((s("a"), Some(s("c")), false)));
        assert_eq!(
            parts("/v1/AUTH_t%C3%A9st/c%20d/%E2%9C%93"),
            Some((s("AUTH_tést"), Some(s("c d")), true))
        );
    }

    #[test]
    fn non_swift_paths_are_not_parsed() {
        for p in [
            "/",
            "/v1",
            "/v1/",
            "/auth/v1.0",
            "/info",
            "/healthcheck",
            "/v2/a/c",
            "/v1/%FF/c",
            "v1/a",
        ] {
            assert_eq!(SwiftPath::parse(p), None, "{p}");
        }
    }

    #[test]
    fn rewrite_keeps_untouched_bytes() {
        let p = SwiftPath::parse("/v1/AUTH_a/c%2Bd/o%20x/y?").expect("swift path");
        assert_eq!(p.rewrite(None, None), "/v1/AUTH_a/c%2Bd/o%20x/y?");
        assert_eq!(
            p.rewrite(Some("AUTH_b"), Some("new c")),
            "/v1/AUTH_b/new%20c/o%20x/y?"
        );
        let p = SwiftPath::parse("/v1/AUTH_a/").expect("swift path");
        assert_eq!(p.rewrite(Some("AUTH_b"), None), "/v1/AUTH_b/");
        let p = SwiftPath::parse("/v1/AUTH_a//o").expect("swift path");
        assert_eq!(p.rewrite(Some("AUTH_b"), None), "/v1/AUTH_b//o");
    }

    #[test]
    fn versions_containers_route_with_their_container() {
        let p = SwiftPath::parse("/v1/AUTH_a/%00versions%00docs/o").expect("swift path");
        assert_eq!(p.routing_container(), Some("docs"));
        assert_eq!(
            p.rewrite(None, Some("docs2")),
            "/v1/AUTH_a/%00versions%00docs2/o"
        );
    }
}
