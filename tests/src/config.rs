//! The configuration files of one test cluster.

use std::path::Path;

/// Ports of one cluster, all on 127.0.0.1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ports {
    pub memcached: u16,
    pub account: u16,
    pub container: u16,
    pub object: u16,
    pub proxy: u16,
}

/// tempauth users present on every cluster: (account, user, key, groups).
pub const USERS: &[(&str, &str, &str, &str)] = &[
    ("test", "tester", "testing", ".admin"),
    ("test", "tester2", "testing2", ""),
    ("test2", "tester", "testing", ".admin"),
    ("test", "sidecar", "sidecar-key", ".admin"),
    ("admin", "admin", "admin", ".admin .reseller_admin"),
];

/// Hash prefix and a per-cluster random suffix; one storage policy; any
/// `[swift-constraints]` overrides (the launcher makes servers read them from
/// this file, not /etc/swift/swift.conf).
pub(crate) fn swift_conf(hash_suffix: &str, constraints: &[(String, String)]) -> String {
    let mut conf = format!(
        "[swift-hash]\n\
         swift_hash_path_prefix = swiftfed\n\
         swift_hash_path_suffix = {hash_suffix}\n\
         \n\
         [storage-policy:0]\n\
         name = gold\n\
         default = yes\n"
    );
    if !constraints.is_empty() {
        conf.push_str("\n[swift-constraints]\n");
        for (name, value) in constraints {
            conf.push_str(&format!("{name} = {value}\n"));
        }
    }
    conf
}

/// `[DEFAULT]` shared by all servers: loopback, one process (workers = 0, so
/// the PID we hold is the server), confs and rings from the cluster dir.
fn default_section(dir: &Path, name: &str, port: u16) -> String {
    format!(
        "[DEFAULT]\n\
         bind_ip = 127.0.0.1\n\
         bind_port = {port}\n\
         workers = 0\n\
         swift_dir = {dir}\n\
         devices = {dir}/node\n\
         mount_check = false\n\
         log_name = {name}\n",
        dir = dir.display()
    )
}

/// account / container / object server: healthcheck in front for readiness probes.
pub(crate) fn backend_conf(dir: &Path, kind: &str, port: u16) -> String {
    let extra = match kind {
        // legacy X-Versions-Location versioning needs this on the container server
        "container" => "allow_versions = true\n",
        _ => "",
    };
    format!(
        "{default}\n\
         [pipeline:main]\n\
         pipeline = healthcheck {kind}-server\n\
         \n\
         [app:{kind}-server]\n\
         use = egg:swift#{kind}\n\
         {extra}\n\
         [filter:healthcheck]\n\
         use = egg:swift#healthcheck\n",
        default = default_section(dir, &format!("{kind}-server"), port)
    )
}

/// Swift 2.38's sample (SAIO) pipeline, in its order; `{auth}` is tempauth or, with Keystone,
/// `authtoken keystoneauth`.
const PROXY_PIPELINE: &str = "catch_errors gatekeeper healthcheck proxy-logging cache \
    listing_formats container_sync bulk tempurl ratelimit {auth} copy container-quotas \
    account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server";

/// How a cluster's proxy authenticates.
#[derive(Clone, Debug)]
pub(crate) enum ProxyAuth {
    /// tempauth with [`USERS`]; tokens live `token_life` seconds.
    Tempauth { token_life: u64 },
    /// Keystone at `url` (validated by `authtoken` as the bootstrap admin), authorized by
    /// `keystoneauth`: roles `admin`/`member` own `AUTH_<project_id>`, `reader` reads it,
    /// `ResellerAdmin` owns every account.
    Keystone { url: String, admin_password: String },
}

/// keystonemiddleware caches validated tokens this long (seconds): shorter than its default
/// (300 s) so that revocations show within a test, long enough that Keystone (one Python process
/// on a busy machine) is not asked to validate every token every few seconds.
pub(crate) const KEYSTONE_TOKEN_CACHE_TIME: u64 = 10;

fn auth_filters(auth: &ProxyAuth) -> (&'static str, String) {
    match auth {
        ProxyAuth::Tempauth { token_life } => {
            let mut users = String::new();
            for (account, user, key, groups) in USERS {
                users.push_str(&format!("user_{account}_{user} = {key} {groups}\n"));
            }
            (
                "tempauth",
                format!(
                    "[filter:tempauth]\n\
                     use = egg:swift#tempauth\n\
                     token_life = {token_life}\n\
                     {users}\n"
                ),
            )
        }
        ProxyAuth::Keystone {
            url,
            admin_password,
        } => (
            "authtoken keystoneauth",
            format!(
                "[filter:authtoken]\n\
                 paste.filter_factory = keystonemiddleware.auth_token:filter_factory\n\
                 www_authenticate_uri = {url}/v3\n\
                 auth_url = {url}\n\
                 auth_type = password\n\
                 interface = public\n\
                 username = admin\n\
                 password = {admin_password}\n\
                 project_name = admin\n\
                 user_domain_id = default\n\
                 project_domain_id = default\n\
                 delay_auth_decision = true\n\
                 include_service_catalog = false\n\
                 token_cache_time = {KEYSTONE_TOKEN_CACHE_TIME}\n\n\
                 [filter:keystoneauth]\n\
                 use = egg:swift#keystoneauth\n\
                 reseller_prefix = AUTH_\n\
                 operator_roles = admin, member\n\
                 project_reader_roles = reader\n\
                 reseller_admin_role = ResellerAdmin\n\n"
            ),
        ),
    }
}

pub(crate) fn proxy_conf(
    dir: &Path,
    ports: Ports,
    auth: &ProxyAuth,
    bulk: &[(String, String)],
) -> String {
    let (auth_pipeline, auth_sections) = auth_filters(auth);
    let pipeline = PROXY_PIPELINE.replace("{auth}", auth_pipeline);
    let mut conf = default_section(dir, "proxy-server", ports.proxy);
    conf.push_str(&format!(
        "\n[pipeline:main]\npipeline = {pipeline}\n\n\
         [app:proxy-server]\n\
         use = egg:swift#proxy\n\
         allow_account_management = true\n\
         account_autocreate = true\n\n\
         {auth_sections}\
         [filter:cache]\n\
         use = egg:swift#memcache\n\
         memcache_servers = 127.0.0.1:{memcached}\n\n\
         [filter:versioned_writes]\n\
         use = egg:swift#versioned_writes\n\
         allow_versioned_writes = true\n\
         allow_object_versioning = true\n\n",
        memcached = ports.memcached,
    ));
    // the rest need no settings: section name -> egg entry point
    for (section, egg) in [
        ("catch_errors", "catch_errors"),
        ("gatekeeper", "gatekeeper"),
        ("healthcheck", "healthcheck"),
        ("proxy-logging", "proxy_logging"),
        ("listing_formats", "listing_formats"),
        ("container_sync", "container_sync"),
        ("bulk", "bulk"),
        ("tempurl", "tempurl"),
        ("ratelimit", "ratelimit"),
        ("copy", "copy"),
        ("container-quotas", "container_quotas"),
        ("account-quotas", "account_quotas"),
        ("slo", "slo"),
        ("dlo", "dlo"),
        ("symlink", "symlink"),
    ] {
        conf.push_str(&format!("[filter:{section}]\nuse = egg:swift#{egg}\n"));
        if section == "bulk" {
            for (name, value) in bulk {
                conf.push_str(&format!("{name} = {value}\n"));
            }
        }
        conf.push('\n');
    }
    conf
}
