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

/// Swift 2.38's sample (SAIO) pipeline with tempauth, in its order.
const PROXY_PIPELINE: &str = "catch_errors gatekeeper healthcheck proxy-logging cache \
    listing_formats container_sync bulk tempurl ratelimit tempauth copy container-quotas \
    account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server";

pub(crate) fn proxy_conf(dir: &Path, ports: Ports, token_life: u64) -> String {
    let mut users = String::new();
    for (account, user, key, groups) in USERS {
        users.push_str(&format!("user_{account}_{user} = {key} {groups}\n"));
    }
    let mut conf = default_section(dir, "proxy-server", ports.proxy);
    conf.push_str(&format!(
        "\n[pipeline:main]\npipeline = {PROXY_PIPELINE}\n\n\
         [app:proxy-server]\n\
         use = egg:swift#proxy\n\
         allow_account_management = true\n\
         account_autocreate = true\n\n\
         [filter:tempauth]\n\
         use = egg:swift#tempauth\n\
         token_life = {token_life}\n\
         {users}\n\
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
        conf.push_str(&format!("[filter:{section}]\nuse = egg:swift#{egg}\n\n"));
    }
    conf
}
