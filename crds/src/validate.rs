//! Validation of a routing table. Every error names the field (as a path like
//! `routes[2].target.cluster`) and the reason, and all errors are reported at once.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::routing::{
    parse_duration, AuthSpec, ContainerMatch, CredentialsSpec, KeystoneCredentials, RoutingTable,
    TlsSpec,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl ValidationErrors {
    fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }
}

pub(crate) fn routing_table(table: &RoutingTable) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    let mut cluster_names = HashSet::new();
    for (i, cluster) in table.clusters.iter().enumerate() {
        let at = format!("clusters[{i}]");
        if cluster.name.trim().is_empty() {
            errors.push(format!("{at}.name"), "must not be empty");
        } else if !cluster_names.insert(cluster.name.as_str()) {
            errors.push(
                format!("{at}.name"),
                format!("duplicate cluster name {:?}", cluster.name),
            );
        }
        if cluster.endpoints.is_empty() {
            errors.push(
                format!("{at}.endpoints"),
                "at least one endpoint is required",
            );
        }
        for (j, endpoint) in cluster.endpoints.iter().enumerate() {
            if let Err(reason) = endpoint_url(endpoint) {
                errors.push(format!("{at}.endpoints[{j}]"), reason);
            }
        }
        if let Some(tls) = &cluster.tls {
            tls_spec(tls, &format!("{at}.tls"), &mut errors);
        }
        if let AuthSpec::Credentials { credentials } = &cluster.auth {
            match credentials {
                CredentialsSpec::Tempauth {
                    auth_url,
                    user,
                    key,
                } => {
                    let at = format!("{at}.auth.credentials");
                    if let Err(reason) = auth_url_check(auth_url) {
                        errors.push(format!("{at}.authUrl"), reason);
                    }
                    if user.trim().is_empty() {
                        errors.push(format!("{at}.user"), "must not be empty");
                    }
                    if key.expose().is_empty() {
                        errors.push(format!("{at}.key"), "must not be empty");
                    }
                }
                CredentialsSpec::Keystone(keystone) => {
                    keystone_credentials(keystone, &format!("{at}.auth.credentials"), &mut errors)
                }
            }
        }
        for (field, value) in [
            ("connect", &cluster.timeouts.connect),
            ("firstByte", &cluster.timeouts.first_byte),
            ("idle", &cluster.timeouts.idle),
        ] {
            if let Err(reason) = parse_duration(value) {
                errors.push(format!("{at}.timeouts.{field}"), reason);
            }
        }
    }

    // A match may appear once per distinct proxy selector: two routes for the same names on the
    // same pods would make the result depend on list order.
    let mut seen: HashMap<(String, Option<ContainerMatch>, String), usize> = HashMap::new();
    for (i, route) in table.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        let account = &route.matcher.account;
        if let Err(reason) = name_segment(account) {
            errors.push(format!("{at}.match.account"), reason);
        }
        match &route.matcher.container {
            Some(ContainerMatch::Exact(c)) => {
                if let Err(reason) = name_segment(c) {
                    errors.push(format!("{at}.match.container.exact"), reason);
                }
            }
            Some(ContainerMatch::Prefix(p)) => {
                if let Err(reason) = name_segment(p) {
                    errors.push(format!("{at}.match.container.prefix"), reason);
                }
            }
            None => {}
        }
        if !cluster_names.contains(route.target.cluster.as_str()) {
            errors.push(
                format!("{at}.target.cluster"),
                format!(
                    "unknown cluster {:?} (clusters: {})",
                    route.target.cluster,
                    table
                        .clusters
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if let Some(a) = &route.target.account {
            if let Err(reason) = name_segment(a) {
                errors.push(format!("{at}.target.account"), reason);
            }
        }
        if let Some(c) = &route.target.container {
            if route.matcher.container.is_none() {
                errors.push(
                    format!("{at}.target.container"),
                    "an account-wide route cannot rename containers; match a container or prefix",
                );
            } else if let Err(reason) = name_segment(c) {
                errors.push(format!("{at}.target.container"), reason);
            }
        }
        for (j, suffix) in route.segment_suffixes.iter().flatten().enumerate() {
            if let Err(reason) = name_segment(suffix) {
                errors.push(format!("{at}.segmentSuffixes[{j}]"), reason);
            }
        }
        let selector = route
            .proxy_selector
            .as_ref()
            .map(|s| format!("{:?}", s.match_labels))
            .unwrap_or_default();
        let key = (account.clone(), route.matcher.container.clone(), selector);
        if let Some(first) = seen.get(&key) {
            errors.push(
                format!("{at}.match"),
                format!("duplicate match: routes[{first}] already routes the same names"),
            );
        } else {
            seen.insert(key, i);
        }
    }

    if errors.0.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// An account or container name (or prefix) as it appears in a Swift path: non-empty, no `/`,
/// within Swift's 256-byte container name limit.
fn name_segment(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.contains('/') {
        return Err(format!("{name:?} must not contain '/'"));
    }
    if name.len() > 256 {
        return Err(format!("{} bytes is longer than Swift's 256", name.len()));
    }
    if name.contains('\0') {
        return Err("must not contain a NUL byte (reserved names follow their container)".into());
    }
    Ok(())
}

fn endpoint_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "{url:?} must be a base URL without path or query (the Swift path is appended)"
        ));
    }
    Ok(())
}

fn auth_url_check(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(format!(
            "{url:?} must be an http:// or https:// URL with a host"
        )),
    }
}

/// One method (password or application credential), each with what identifies the user and
/// the scope; no field of the other method; no empty names.
fn keystone_credentials(k: &KeystoneCredentials, at: &str, errors: &mut ValidationErrors) {
    match auth_url_check(&k.auth_url) {
        Err(reason) => errors.push(format!("{at}.authUrl"), reason),
        Ok(()) if !k.auth_url.trim_end_matches('/').ends_with("/v3") => errors.push(
            format!("{at}.authUrl"),
            format!(
                "{:?} must be Keystone's Identity v3 URL, ending in /v3",
                k.auth_url
            ),
        ),
        Ok(()) => {}
    }
    let names = [
        ("userId", &k.user_id),
        ("userName", &k.user_name),
        ("userDomainId", &k.user_domain_id),
        ("userDomainName", &k.user_domain_name),
        ("projectId", &k.project_id),
        ("projectName", &k.project_name),
        ("projectDomainId", &k.project_domain_id),
        ("projectDomainName", &k.project_domain_name),
        ("applicationCredentialId", &k.application_credential_id),
        ("applicationCredentialName", &k.application_credential_name),
    ];
    for (field, value) in names {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            errors.push(format!("{at}.{field}"), "must not be empty when set");
        }
    }
    for (field, secret) in [
        ("password", &k.password),
        (
            "applicationCredentialSecret",
            &k.application_credential_secret,
        ),
    ] {
        if secret.as_ref().is_some_and(|s| s.expose().is_empty()) {
            errors.push(format!("{at}.{field}"), "must not be empty when set");
        }
    }
    let user_named = k.user_id.is_some() || k.user_name.is_some();
    let user_domain = k.user_domain_id.is_some() || k.user_domain_name.is_some();
    if k.user_id.is_none() && k.user_name.is_some() && !user_domain {
        errors.push(
            format!("{at}.userDomainName"),
            "userDomainId or userDomainName is required with userName",
        );
    }
    match (&k.password, &k.application_credential_secret) {
        (Some(_), Some(_)) => errors.push(
            format!("{at}.applicationCredentialSecret"),
            "set either password or applicationCredentialSecret, not both",
        ),
        (None, None) => errors.push(
            format!("{at}.password"),
            "required: password (with a user and a project) or applicationCredentialSecret",
        ),
        (Some(_), None) => {
            if !user_named {
                errors.push(format!("{at}.userName"), "userId or userName is required");
            }
            if k.project_id.is_none() && k.project_name.is_none() {
                errors.push(
                    format!("{at}.projectName"),
                    "projectId or projectName is required: the token's scope, owning the \
                     target accounts",
                );
            }
            if k.project_id.is_none()
                && k.project_name.is_some()
                && k.project_domain_id.is_none()
                && k.project_domain_name.is_none()
            {
                errors.push(
                    format!("{at}.projectDomainName"),
                    "projectDomainId or projectDomainName is required with projectName",
                );
            }
            for (field, value) in [
                ("applicationCredentialId", &k.application_credential_id),
                ("applicationCredentialName", &k.application_credential_name),
            ] {
                if value.is_some() {
                    errors.push(
                        format!("{at}.{field}"),
                        "only with applicationCredentialSecret",
                    );
                }
            }
        }
        (None, Some(_)) => {
            if k.application_credential_id.is_none() {
                if k.application_credential_name.is_none() {
                    errors.push(
                        format!("{at}.applicationCredentialId"),
                        "applicationCredentialId or applicationCredentialName is required",
                    );
                } else if !user_named {
                    errors.push(
                        format!("{at}.userName"),
                        "userId or userName is required with applicationCredentialName",
                    );
                }
            }
            for (field, value) in [
                ("projectId", &k.project_id),
                ("projectName", &k.project_name),
                ("projectDomainId", &k.project_domain_id),
                ("projectDomainName", &k.project_domain_name),
            ] {
                if value.is_some() {
                    errors.push(
                        format!("{at}.{field}"),
                        "not used with an application credential: it carries its own project",
                    );
                }
            }
        }
    }
    if let Some(tls) = &k.tls {
        tls_spec(tls, &format!("{at}.tls"), errors);
    }
}

fn tls_spec(tls: &TlsSpec, at: &str, errors: &mut ValidationErrors) {
    for (field, pem) in [
        ("caPem", &tls.ca_pem),
        ("clientCertPem", &tls.client_cert_pem),
    ] {
        if let Some(pem) = pem {
            if let Err(reason) = certificates_pem(pem) {
                errors.push(format!("{at}.{field}"), reason);
            }
        }
    }
    if let Some(key) = &tls.client_key_pem {
        if let Err(reason) = private_key_pem(key.expose()) {
            errors.push(format!("{at}.clientKeyPem"), reason);
        }
    }
    match (&tls.client_cert_pem, &tls.client_key_pem) {
        (Some(_), None) => errors.push(
            format!("{at}.clientKeyPem"),
            "required with clientCertPem (the certificate's private key)",
        ),
        (None, Some(_)) => errors.push(
            format!("{at}.clientCertPem"),
            "required with clientKeyPem (the key's certificate)",
        ),
        _ => {}
    }
    if let Some(name) = &tls.server_name {
        if name.trim().is_empty() {
            errors.push(format!("{at}.serverName"), "must not be empty when set");
        } else if !is_server_name(name) {
            errors.push(
                format!("{at}.serverName"),
                format!("{name:?} is not a DNS name or an IP address"),
            );
        }
    }
}

/// A DNS name (labels of letters, digits, `-`, `_`) or an IP address, as TLS can verify.
fn is_server_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// One or more certificates, and nothing secret: the field is shown by `GET /v1/config`.
fn certificates_pem(pem: &str) -> Result<(), String> {
    let labels = pem_blocks(pem)?;
    if labels.iter().any(|l| l.contains("PRIVATE KEY")) {
        return Err("contains a private key; only certificates belong here".into());
    }
    if !labels.iter().any(|l| l == "CERTIFICATE") {
        return Err("contains no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(())
}

/// Exactly one unencrypted private key. Reasons never quote the key.
fn private_key_pem(pem: &str) -> Result<(), String> {
    let labels = pem_blocks(pem)?;
    if labels.iter().any(|l| l == "ENCRYPTED PRIVATE KEY") {
        return Err("encrypted private keys are not supported; give the key unencrypted".into());
    }
    let keys = labels
        .iter()
        .filter(|l| {
            matches!(
                l.as_str(),
                "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY"
            )
        })
        .count();
    if keys != 1 {
        return Err(format!(
            "must hold exactly one PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE \
             KEY), found {keys}"
        ));
    }
    Ok(())
}

/// The labels of the PEM blocks in `text`, checking the framing and the base64 only (the sidecar
/// parses the DER itself). Text outside blocks is ignored, as bundles often carry comments.
fn pem_blocks(text: &str) -> Result<Vec<String>, String> {
    let mut labels = Vec::new();
    let mut open: Option<(String, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        let n = n + 1;
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if let Some((outer, _)) = &open {
                return Err(format!("line {n}: BEGIN {label} inside the {outer} block"));
            }
            open = Some((label.to_string(), String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            match open.take() {
                Some((begun, body)) if begun == label => {
                    if !is_base64(&body) {
                        return Err(format!(
                            "the {label} block ending on line {n} is not valid base64"
                        ));
                    }
                    labels.push(begun);
                }
                Some((begun, _)) => {
                    return Err(format!("line {n}: END {label} closes a {begun} block"))
                }
                None => return Err(format!("line {n}: END {label} without BEGIN")),
            }
        } else if let Some((_, body)) = &mut open {
            body.push_str(line);
        }
    }
    if let Some((label, _)) = open {
        return Err(format!("the {label} block has no END line"));
    }
    Ok(labels)
}

fn is_base64(body: &str) -> bool {
    let data = body.trim_end_matches('=');
    !data.is_empty()
        // Whole 4-character groups (a bit mask: `is_multiple_of` is newer than our MSRV).
        && (body.len() & 3) == 0
        && body.len() - data.len() <= 2
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

#[cfg(test)]
mod tests {
    use crate::routing::RoutingTable;

    fn errors_of(yaml: &str) -> Vec<(String, String)> {
        let table: RoutingTable = serde_yaml::from_str(yaml).expect("parses");
        match table.validate() {
            Ok(()) => vec![],
            Err(e) => e.0.into_iter().map(|e| (e.field, e.reason)).collect(),
        }
    }

    #[test]
    fn a_good_table_passes() {
        let yaml = r#"
revision: 1
clusters:
- name: b
  endpoints: ["http://127.0.0.1:8080", "https://swift-b.example.com"]
  timeouts: {connect: 500ms, firstByte: 10s, idle: 1m}
routes:
- match: {account: AUTH_a}
  target: {cluster: b, account: AUTH_b}
- match: {account: AUTH_a, container: {exact: photos}}
  target: {cluster: b, container: photos-b}
  mode: Migrate
- match: {account: AUTH_a, container: {prefix: "arch-"}}
  target: {cluster: b}
  proxySelector: {matchLabels: {app: swift-proxy}}
"#;
        assert_eq!(errors_of(yaml), vec![]);
    }

    #[test]
    fn keystone_credentials_need_one_complete_method() {
        let cluster = |creds: &str| {
            format!(
                "clusters:\n- name: b\n  endpoints: [\"http://h:1\"]\n  auth: {{mode: Credentials, \
                 credentials: {{type: keystone, {creds}}}}}\n"
            )
        };
        let at = "clusters[0].auth.credentials";
        let fields = |creds: &str| -> Vec<String> {
            errors_of(&cluster(creds))
                .into_iter()
                .map(|(f, _)| f.trim_start_matches(at).to_string())
                .collect()
        };
        let ok = [
            "authUrl: \"http://ks:5000/v3\", userName: sc, userDomainId: default, password: pw, \
             projectName: p, projectDomainName: Default",
            "authUrl: \"https://ks/v3/\", userId: u1, password: pw, projectId: p1",
            "authUrl: \"http://ks/v3\", applicationCredentialId: ac, applicationCredentialSecret: s",
            "authUrl: \"http://ks/v3\", applicationCredentialName: ac, userId: u, \
             applicationCredentialSecret: s",
        ];
        for creds in ok {
            assert_eq!(fields(creds), Vec::<String>::new(), "{creds}");
        }
        let bad = [
            ("authUrl: \"http://ks:5000\", userId: u, password: pw, projectId: p", ".authUrl"),
            ("authUrl: \"http://ks/v3\", userId: u, projectId: p", ".password"),
            ("authUrl: \"http://ks/v3\", userName: u, password: pw, projectId: p", ".userDomainName"),
            ("authUrl: \"http://ks/v3\", password: pw, projectId: p", ".userName"),
            ("authUrl: \"http://ks/v3\", userId: u, password: pw", ".projectName"),
            ("authUrl: \"http://ks/v3\", userId: u, password: pw, projectName: p", ".projectDomainName"),
            ("authUrl: \"http://ks/v3\", userId: u, password: \"\", projectId: p", ".password"),
            (
                "authUrl: \"http://ks/v3\", applicationCredentialId: a, applicationCredentialSecret: s, \
                 password: pw",
                ".applicationCredentialSecret",
            ),
            ("authUrl: \"http://ks/v3\", applicationCredentialSecret: s", ".applicationCredentialId"),
            (
                "authUrl: \"http://ks/v3\", applicationCredentialName: a, applicationCredentialSecret: s",
                ".userName",
            ),
            (
                "authUrl: \"http://ks/v3\", applicationCredentialId: a, applicationCredentialSecret: s, \
                 projectId: p",
                ".projectId",
            ),
        ];
        for (creds, field) in bad {
            assert!(
                fields(creds).iter().any(|f| f == field),
                "{creds}: {field} missing in {:?}",
                fields(creds)
            );
        }
    }

    #[test]
    fn every_error_names_its_field() {
        let yaml = r#"
clusters:
- name: b
  endpoints: ["ftp://x", "http://h:1/v1", "not a url"]
  timeouts: {connect: 0s}
- name: b
  endpoints: []
  auth: {mode: Credentials, credentials: {type: tempauth, authUrl: "", user: "", key: ""}}
routes:
- match: {account: ""}
  target: {cluster: nowhere}
- match: {account: AUTH_a, container: {exact: "x/y"}}
  target: {cluster: b}
- match: {account: AUTH_a}
  target: {cluster: b, container: c}
- match: {account: AUTH_a}
  target: {cluster: b}
"#;
        let fields: Vec<String> = errors_of(yaml).into_iter().map(|(f, _)| f).collect();
        for expected in [
            "clusters[0].endpoints[0]",
            "clusters[0].endpoints[1]",
            "clusters[0].endpoints[2]",
            "clusters[0].timeouts.connect",
            "clusters[1].name",
            "clusters[1].endpoints",
            "clusters[1].auth.credentials.authUrl",
            "clusters[1].auth.credentials.user",
            "clusters[1].auth.credentials.key",
            "routes[0].match.account",
            "routes[0].target.cluster",
            "routes[1].match.container.exact",
            "routes[2].target.container",
            "routes[3].match",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing in {fields:?}"
            );
        }
    }

    #[test]
    fn tls_settings_are_checked_naming_the_field() {
        let cert = "-----BEGIN CERTIFICATE-----\\nMIJub3QgcmVhbGx5IGEgY2VydGlmaWNhdGUsIGZyYW1pbmcgb25seQ==\\n-----END CERTIFICATE-----\\n";
        let key =
            "-----BEGIN PRIVATE KEY-----\\nMIJub3QgcmVhbGx5IGEga2V5\\n-----END PRIVATE KEY-----\\n";
        let good = format!(
            "clusters: [{{name: b, endpoints: [\"https://h:1\"], tls: {{caPem: \"{cert}\", serverName: swift-b.example.com, clientCertPem: \"{cert}\", clientKeyPem: \"{key}\"}}}}]"
        );
        assert_eq!(errors_of(&good), vec![]);

        let bad = format!(
            "clusters:\n\
             - {{name: a, endpoints: [\"https://h:1\"], tls: {{caPem: \"{key}\", serverName: \"a b\", clientCertPem: \"{cert}\"}}}}\n\
             - {{name: b, endpoints: [\"https://h:1\"], tls: {{caPem: \"-----BEGIN CERTIFICATE-----\\n%%%\\n-----END CERTIFICATE-----\", clientKeyPem: \"{key}{key}\"}}}}\n\
             - {{name: c, endpoints: [\"https://h:1\"], tls: {{caPem: \"-----BEGIN CERTIFICATE-----\\nAAAA\", clientKeyPem: \"-----BEGIN ENCRYPTED PRIVATE KEY-----\\nAAAA\\n-----END ENCRYPTED PRIVATE KEY-----\", clientCertPem: \"{cert}\"}}}}\n"
        );
        let errors = errors_of(&bad);
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        for expected in [
            "clusters[0].tls.caPem",
            "clusters[0].tls.serverName",
            "clusters[0].tls.clientKeyPem",
            "clusters[1].tls.caPem",
            "clusters[1].tls.clientKeyPem",
            "clusters[1].tls.clientCertPem",
            "clusters[2].tls.caPem",
            "clusters[2].tls.clientKeyPem",
        ] {
            assert!(
                fields.contains(&expected),
                "{expected} missing in {errors:?}"
            );
        }
        // A reason about a key never quotes it.
        assert!(
            errors
                .iter()
                .all(|(_, reason)| !reason.contains("MIJub3QgcmVhbGx5IGEga2V5")),
            "{errors:?}"
        );
    }

    #[test]
    fn same_match_on_different_pods_is_not_a_duplicate() {
        let yaml = r#"
clusters: [{name: b, endpoints: ["http://127.0.0.1:1"]}]
routes:
- match: {account: A}
  target: {cluster: b}
  proxySelector: {matchLabels: {zone: "1"}}
- match: {account: A}
  target: {cluster: b}
  proxySelector: {matchLabels: {zone: "2"}}
"#;
        assert_eq!(errors_of(yaml), vec![]);
    }
}
