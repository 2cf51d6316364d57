//! Keystone against real Swift, through the real sidecar binary. One real Keystone (Debian's
//! python3-keystone, sqlite, fernet tokens) and two Swift clusters `a` (local, behind the
//! sidecar) and `b` (target) that both authenticate with it (`authtoken` + `keystoneauth`,
//! accounts `AUTH_<project_id>`) are shared by the tests of this file; every test makes its own
//! projects, users and containers.
//!
//! - `Passthrough`: a Keystone token works through the sidecar on routed and unrouted
//!   containers; a route renaming the account leaves authorization to the target.
//! - `Credentials` with Keystone v3 (password, application credential): the sidecar's own
//!   project-scoped token acts on the target, only after the local cluster authorized the client;
//!   clients refused locally get exactly the local answer and nothing on the target changes.
//! - The sidecar's token: refreshed before expiry under concurrent load by one token request at a
//!   time, and renewed once (request retried with its body) when the target refuses it.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::tls::{server_config, Ca, Front};
use support::*;
use swiftfed_tests::{unique_name, HttpResponse, Keystone, SwiftCluster};

const TOKEN_FETCHES: &str = "swiftfed_sidecar_auth_token_fetches_total";
/// One sample per request the sidecar sent to a cluster: proves whether anything reached it.
const UPSTREAM_SENDS: &str = "swiftfed_sidecar_upstream_latency_seconds_count";

struct Env {
    keystone: Keystone,
    a: SwiftCluster,
    b: SwiftCluster,
    /// The bootstrap admin with `ResellerAdmin`: reads any account directly, to check what is
    /// really stored.
    reseller_token: String,
}

static ENV: OnceLock<Env> = OnceLock::new();

fn env() -> &'static Env {
    ENV.get_or_init(|| {
        let keystone = Keystone::start("keystone", 3600).expect("start Keystone");
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| SwiftCluster::builder("ka").keystone(&keystone).start());
            let b = s.spawn(|| SwiftCluster::builder("kb").keystone(&keystone).start());
            (
                a.join().expect("start a").expect("start a"),
                b.join().expect("start b").expect("start b"),
            )
        });
        let admin = keystone.password_token("admin", keystone.admin_password(), None);
        let admin = admin.expect("admin token");
        keystone.create_role("ResellerAdmin").expect("role");
        keystone
            .grant(&admin.project_id, &admin.user_id, "ResellerAdmin")
            .expect("grant ResellerAdmin");
        let reseller_token = keystone.admin_token().expect("reseller admin token");
        Env {
            keystone,
            a,
            b,
            reseller_token,
        }
    })
}

/// A user with `role` on a project of its own.
struct User {
    id: String,
    name: String,
    password: String,
    project: String,
}

impl Env {
    fn user(&self, role: &str) -> User {
        let name = unique_name("user");
        let password = format!("{name}-pw");
        let project = self
            .keystone
            .create_project(&unique_name("project"))
            .expect("project");
        let id = self.keystone.create_user(&name, &password).expect("user");
        self.keystone.grant(&project, &id, role).expect("grant");
        User {
            id,
            name,
            password,
            project,
        }
    }

    /// A user with `role` on an existing project.
    fn member_of(&self, project: &str, role: &str) -> User {
        let name = unique_name("user");
        let password = format!("{name}-pw");
        let id = self.keystone.create_user(&name, &password).expect("user");
        self.keystone.grant(project, &id, role).expect("grant");
        User {
            id,
            name,
            password,
            project: project.to_string(),
        }
    }

    fn token(&self, user: &User) -> String {
        self.keystone
            .password_token(&user.name, &user.password, Some(&user.project))
            .expect("token")
            .token
    }

    /// What cluster `cluster` really holds at `/v1/<path>`, read as the reseller admin.
    fn stored(&self, cluster: &SwiftCluster, path: &str) -> HttpResponse {
        let url = format!("{}/v1/{path}", cluster.proxy_url());
        req("GET", &url, &self.reseller_token, &[], b"")
    }
}

fn account(project: &str) -> String {
    format!("AUTH_{project}")
}

/// One cluster of a routing table (YAML list item) at `endpoint` with `auth` (flow mapping).
fn cluster(name: &str, endpoint: &str, auth: &str) -> String {
    format!(
        "- name: {name}\n  endpoints: [\"{endpoint}\"]\n  auth: {auth}\n  timeouts: {{connect: 1s, firstByte: 30s, idle: 30s}}"
    )
}

/// Keystone password credentials of `user` (name + domain, project by id) at `keystone_url`.
fn password_auth(keystone_url: &str, user: &User) -> String {
    format!(
        "{{mode: Credentials, credentials: {{type: keystone, authUrl: \"{keystone_url}/v3\", \
         userName: \"{}\", userDomainId: default, password: \"{}\", projectId: \"{}\"}}}}",
        user.name, user.password, user.project
    )
}

fn table(clusters: &[String], routes: &[String]) -> String {
    format!(
        "revision: 1\nclusters:\n{}\nroutes:\n{}\n",
        clusters.join("\n"),
        routes.join("\n")
    )
}

/// A route for the containers of `account` starting with `prefix` to `cluster`, optionally
/// renaming the account.
fn route(account: &str, prefix: &str, cluster: &str, target_account: Option<&str>) -> String {
    let rename = target_account
        .map(|a| format!(", account: \"{a}\""))
        .unwrap_or_default();
    format!(
        "- {{match: {{account: \"{account}\", container: {{prefix: \"{prefix}\"}}}}, target: {{cluster: {cluster}{rename}}}}}"
    )
}

#[test]
fn passthrough_keystone_tokens_work_on_routed_and_unrouted_containers() {
    let env = env();
    let user = env.user("member");
    let token = env.token(&user);
    let acct = account(&user.project);
    let fed = unique_name("fed");
    let sidecar = Sidecar::start(
        env.a.proxy_port(),
        Some(&table(
            &[cluster("b", &env.b.proxy_url(), "{mode: Passthrough}")],
            &[route(&acct, &fed, "b", None)],
        )),
    );
    let base = format!("{}/v1/{acct}", sidecar.url());
    let local = unique_name("local");
    for (container, body) in [(&fed, "routed"), (&local, "unrouted")] {
        ok(
            &req("PUT", &format!("{base}/{container}"), &token, &[], b""),
            "container PUT",
        );
        let object = format!("{base}/{container}/o");
        ok(&req("PUT", &object, &token, &[], body.as_bytes()), "PUT");
        let got = req("GET", &object, &token, &[], b"");
        assert_eq!((got.status, got.body_text().as_str()), (200, body));
    }
    // Where the data really is.
    let on_b = env.stored(&env.b, &format!("{acct}/{fed}/o"));
    assert_eq!((on_b.status, on_b.body_text().as_str()), (200, "routed"));
    assert_eq!(env.stored(&env.a, &format!("{acct}/{fed}")).status, 404);
    let on_a = env.stored(&env.a, &format!("{acct}/{local}/o"));
    assert_eq!((on_a.status, on_a.body_text().as_str()), (200, "unrouted"));
    assert_eq!(env.stored(&env.b, &format!("{acct}/{local}")).status, 404);
    // The target checked the token itself: none, or a bad one, is refused there.
    let object = format!("{base}/{fed}/o");
    let none = swiftfed_tests::http_request("GET", &object, &[], b"").expect("GET");
    assert_eq!(none.status, 401);
    assert_eq!(req("GET", &object, "not-a-token", &[], b"").status, 401);
}

/// A route renaming `AUTH_<p1>` to `AUTH_<p2>`: with Passthrough the target authorizes the
/// client's token (scoped to p1) on p2's account: refused until p2's owner grants p1's user a
/// `project:user` container ACL there, then reads and writes land in p2's account.
#[test]
fn passthrough_account_rename_leaves_authorization_to_the_target() {
    let env = env();
    let client = env.user("member");
    let owner = env.user("member");
    let (from, to) = (account(&client.project), account(&owner.project));
    let prefix = unique_name("ren");
    let sidecar = Sidecar::start(
        env.a.proxy_port(),
        Some(&table(
            &[cluster("b", &env.b.proxy_url(), "{mode: Passthrough}")],
            &[route(&from, &prefix, "b", Some(&to))],
        )),
    );
    let token = env.token(&client);
    let container = format!("{prefix}-c");
    let object = format!("{}/v1/{from}/{container}/o", sidecar.url());
    let owner_token = env.token(&owner);
    let direct = format!("{}/v1/{to}/{container}", env.b.proxy_url());
    ok(&req("PUT", &direct, &owner_token, &[], b""), "owner PUT");

    assert_eq!(req("PUT", &object, &token, &[], b"x").status, 403);
    assert_eq!(
        env.stored(&env.b, &format!("{to}/{container}/o")).status,
        404
    );

    let acl = format!("{}:{}", client.project, client.id);
    ok(
        &req(
            "POST",
            &direct,
            &owner_token,
            &[("X-Container-Write", &acl), ("X-Container-Read", &acl)],
            b"",
        ),
        "owner sets ACLs",
    );
    ok(
        &req("PUT", &object, &token, &[], b"renamed"),
        "PUT with ACL",
    );
    let got = req("GET", &object, &token, &[], b"");
    assert_eq!((got.status, got.body_text().as_str()), (200, "renamed"));
    let stored = env.stored(&env.b, &format!("{to}/{container}/o"));
    assert_eq!(
        (stored.status, stored.body_text().as_str()),
        (200, "renamed")
    );
    assert_eq!(
        env.stored(&env.b, &format!("{from}/{container}")).status,
        404
    );
}

#[test]
fn credentials_with_a_keystone_password_or_application_credential_act_as_the_sidecar() {
    let env = env();
    // The sidecar's identity: a member of the target project; the client: a member of its own
    // project only, with no role on the target project.
    let sidecar_user = env.user("member");
    let client = env.user("member");
    let target = account(&sidecar_user.project);
    let sidecar_token = env.token(&sidecar_user);
    let (credential_id, secret) = env
        .keystone
        .create_app_credential(&sidecar_user.id, &sidecar_token, &unique_name("fed"))
        .expect("application credential");
    let acct = account(&client.project);
    let (pw, app) = (unique_name("pw"), unique_name("app"));
    let b = env.b.proxy_url();
    let app_auth = format!(
        "{{mode: Credentials, credentials: {{type: keystone, authUrl: \"{}/v3\", \
         applicationCredentialId: \"{credential_id}\", applicationCredentialSecret: \"{secret}\"}}}}",
        env.keystone.url()
    );
    let sidecar = Sidecar::start(
        env.a.proxy_port(),
        Some(&table(
            &[
                cluster("pw", &b, &password_auth(&env.keystone.url(), &sidecar_user)),
                cluster("app", &b, &app_auth),
            ],
            &[
                route(&acct, &pw, "pw", Some(&target)),
                route(&acct, &app, "app", Some(&target)),
            ],
        )),
    );
    let token = env.token(&client);
    let base = format!("{}/v1/{acct}", sidecar.url());
    for (cluster, container) in [("pw", &pw), ("app", &app)] {
        ok(
            &req("PUT", &format!("{base}/{container}"), &token, &[], b""),
            "container PUT",
        );
        for i in 0..3 {
            let body = format!("{cluster} {i}");
            let object = format!("{base}/{container}/o{i}");
            ok(&req("PUT", &object, &token, &[], body.as_bytes()), "PUT");
            let got = req("GET", &object, &token, &[], b"");
            assert_eq!((got.status, got.body_text()), (200, body.clone()));
            let stored = env.stored(&env.b, &format!("{target}/{container}/o{i}"));
            assert_eq!((stored.status, stored.body_text()), (200, body));
        }
        // One token for all of these requests.
        assert_eq!(sidecar.metric(TOKEN_FETCHES, &[("cluster", cluster)]), 1.0);
    }
    // A reseller admin (keystoneauth `ResellerAdmin`) is authorized locally on any account.
    let by_reseller = format!("{base}/{pw}/reseller");
    ok(
        &req("PUT", &by_reseller, &env.reseller_token, &[], b"r"),
        "reseller admin PUT",
    );
    let stored = env.stored(&env.b, &format!("{target}/{pw}/reseller"));
    assert_eq!((stored.status, stored.body_text().as_str()), (200, "r"));
    // The client alone has no access to the target account: only the sidecar's token does.
    let direct = format!("{}/v1/{target}/{pw}/o0", env.b.proxy_url());
    assert_eq!(req("GET", &direct, &token, &[], b"").status, 403);
    // Nothing of the routed containers is on the local cluster.
    assert_eq!(env.stored(&env.a, &format!("{acct}/{pw}")).status, 404);
    assert_eq!(env.stored(&env.a, &format!("{target}/{pw}")).status, 404);
    // Secrets stay out of what the sidecar shows.
    let shown = format!(
        "{}{}{}",
        sidecar.log(),
        sidecar.metrics(),
        sidecar.get_config().body_text()
    );
    for secret in [&sidecar_user.password, &secret, &token, &sidecar_token] {
        assert!(
            !shown.contains(secret.as_str()),
            "a secret shows in the sidecar's output"
        );
    }
}

/// Credentials Keystone refuses: the client, once authorized locally, gets a 503 naming the
/// cluster and Keystone's answer; nothing is sent to the target.
#[test]
fn credentials_keystone_refuses_answer_503_naming_the_cluster() {
    let env = env();
    let sidecar_user = env.user("member");
    let client = env.user("member");
    let wrong = User {
        password: "not-the-password".into(),
        ..env.member_of(&sidecar_user.project, "member")
    };
    let acct = account(&client.project);
    let prefix = unique_name("bad");
    let sidecar = Sidecar::start(
        env.a.proxy_port(),
        Some(&table(
            &[cluster(
                "b",
                &env.b.proxy_url(),
                &password_auth(&env.keystone.url(), &wrong),
            )],
            &[route(
                &acct,
                &prefix,
                "b",
                Some(&account(&sidecar_user.project)),
            )],
        )),
    );
    let token = env.token(&client);
    let r = req(
        "PUT",
        &format!("{}/v1/{acct}/{prefix}-c", sidecar.url()),
        &token,
        &[],
        b"",
    );
    assert_eq!(r.status, 503, "{}", r.body_text());
    let text = r.body_text();
    assert!(text.contains("cluster b") && text.contains("401"), "{text}");
    assert!(!text.contains("not-the-password"));
    assert_eq!(sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]), 0.0);
    // A client the local cluster refuses learns nothing about it: the local answer comes first.
    let refused = req(
        "PUT",
        &format!("{}/v1/{acct}/{prefix}-c", sidecar.url()),
        "not-a-token",
        &[],
        b"",
    );
    assert_eq!(refused.status, 401);
}

/// The requests a refused client tries on a routed container holding `o`; `source` is an
/// existing local object (`container/object`) to copy from.
type Attempt<'s> = (&'static str, String, Vec<(&'static str, &'s str)>);

fn attempts<'s>(container: &str, source: &'s str) -> Vec<Attempt<'s>> {
    let c = container;
    vec![
        ("GET", format!("{c}/o"), vec![]),
        ("HEAD", format!("{c}/o"), vec![]),
        ("GET", c.to_string(), vec![]),
        ("PUT", format!("{c}/o"), vec![]),
        ("PUT", format!("{c}/new"), vec![]),
        ("POST", format!("{c}/o"), vec![("X-Object-Meta-Evil", "1")]),
        ("DELETE", format!("{c}/o"), vec![]),
        ("POST", c.to_string(), vec![("X-Container-Meta-Evil", "1")]),
        ("PUT", format!("{c}-new"), vec![]),
        ("PUT", format!("{c}/copy"), vec![("X-Copy-From", source)]),
    ]
}

fn is_write(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD")
}

/// Item 4: clients the local cluster (keystoneauth) refuses — no token, an unscoped token of a
/// user without roles, a token for another project, an expired token, a revoked token, and a
/// `reader` (project_reader_roles) attempting writes — get from the sidecar exactly the status
/// the local cluster answers for the same request, the target is not even contacted, and what it
/// stores is unchanged. The reader's reads work (the local check grants reads to readers).
#[test]
fn clients_refused_locally_get_the_local_answer_and_the_target_is_untouched() {
    let env = env();
    let sidecar_user = env.user("member");
    let owner = env.user("member");
    let reader = env.member_of(&owner.project, "reader");
    let other = env.user("member");
    let target = account(&sidecar_user.project);
    let acct = account(&owner.project);
    let prefix = unique_name("cd");
    let sidecar = Sidecar::start(
        env.a.proxy_port(),
        Some(&table(
            &[cluster(
                "b",
                &env.b.proxy_url(),
                &password_auth(&env.keystone.url(), &sidecar_user),
            )],
            &[route(&acct, &prefix, "b", Some(&target))],
        )),
    );
    let container = format!("{prefix}-c");
    let base = format!("{}/v1/{acct}", sidecar.url());
    let owner_token = env.token(&owner);
    ok(
        &req(
            "PUT",
            &format!("{base}/{container}"),
            &owner_token,
            &[],
            b"",
        ),
        "owner container PUT",
    );
    ok(
        &req(
            "PUT",
            &format!("{base}/{container}/o"),
            &owner_token,
            &[],
            b"original",
        ),
        "owner PUT",
    );

    // An expired token: from a Keystone serving the same database with 3-second tokens,
    // used once the local cluster refuses it.
    let short = env.keystone.sibling(3).expect("short-token Keystone");
    let expired = short
        .password_token(&owner.name, &owner.password, Some(&owner.project))
        .expect("short token")
        .token;
    let local_object = format!("{}/v1/{acct}/{container}/o", env.a.proxy_url());
    let deadline = Instant::now() + Duration::from_secs(30);
    while req("HEAD", &local_object, &expired, &[], b"").status != 401 {
        assert!(Instant::now() < deadline, "short token never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(short);
    // A revoked token, never used before through the sidecar (so no cached check vouches for it).
    let revoked = env.token(&owner);
    env.keystone.revoke_token(&revoked).expect("revoke");
    let roleless = unique_name("nobody");
    env.keystone
        .create_user(&roleless, "nobody-pw")
        .expect("user without roles");
    let unscoped = env
        .keystone
        .unscoped_token(&roleless, "nobody-pw")
        .expect("unscoped token")
        .token;
    let clients: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("unscoped token, no role", Some(unscoped)),
        ("another project's token", Some(env.token(&other))),
        ("expired token", Some(expired)),
        ("revoked token", Some(revoked)),
        ("reader", Some(env.token(&reader))),
    ];

    // A local, unrouted object to copy from: readable by the reader, so that a copy is refused
    // for the write, as locally.
    let source = format!("{}/o", unique_name("src"));
    let local_source = format!("{}/v1/{acct}/{source}", env.a.proxy_url());
    let source_container = local_source.trim_end_matches("/o");
    ok(
        &req("PUT", source_container, &owner_token, &[], b""),
        "source container",
    );
    ok(
        &req("PUT", &local_source, &owner_token, &[], b"source"),
        "source object",
    );
    let stored_before = env.stored(&env.b, &format!("{target}/{container}/o"));
    let listing_before = env.stored(&env.b, &format!("{target}/{container}"));
    let sends_before = sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]);
    let mut reader_reads = 0.0;
    for (who, token) in &clients {
        for (method, path, headers) in attempts(&container, &source) {
            let mut all: Vec<(&str, &str)> = headers.clone();
            if let Some(t) = token {
                all.push(("X-Auth-Token", t));
            }
            // A copy has no body of its own (Swift answers 400 to one, before authorizing).
            let copy = headers.iter().any(|(k, _)| *k == "X-Copy-From");
            let body: &[u8] = if method == "PUT" && !copy {
                b"evil"
            } else {
                b""
            };
            let local = swiftfed_tests::http_request(
                method,
                &format!("{}/v1/{acct}/{path}", env.a.proxy_url()),
                &all,
                body,
            )
            .expect("local request");
            let through =
                swiftfed_tests::http_request(method, &format!("{base}/{path}"), &all, body)
                    .expect("sidecar request");
            if *who == "reader" && !is_write(method) {
                // Allowed locally (the local cluster has no such container: 404), served by b.
                assert!(
                    through.status / 100 == 2,
                    "reader {method} {path}: {} {}",
                    through.status,
                    through.body_text()
                );
                reader_reads += 1.0;
                continue;
            }
            assert!(
                matches!(local.status, 401 | 403),
                "{who}: local {method} {path} answered {}",
                local.status
            );
            // Status and challenge are the local cluster's; the body is that of the local
            // answer to the check (a HEAD for reads: none).
            assert_eq!(
                (through.status, through.header("www-authenticate")),
                (local.status, local.header("www-authenticate")),
                "{who}: {method} {path} through the sidecar vs locally"
            );
        }
    }
    // Only the reader's reads reached b.
    assert_eq!(
        sidecar.metric(UPSTREAM_SENDS, &[("cluster", "b")]) - sends_before,
        reader_reads
    );
    let stored_after = env.stored(&env.b, &format!("{target}/{container}/o"));
    assert_eq!(stored_after.body_text(), "original");
    assert_eq!(stored_after.header("etag"), stored_before.header("etag"));
    assert_eq!(stored_after.header("x-object-meta-evil"), None);
    let listing_after = env.stored(&env.b, &format!("{target}/{container}"));
    assert_eq!(listing_after.body_text(), listing_before.body_text());
    assert_eq!(listing_after.header("x-container-meta-evil"), None);
    for absent in ["{container}-new", "{container}/new", "{container}/copy"] {
        let path = absent.replace("{container}", &container);
        assert_eq!(
            env.stored(&env.b, &format!("{target}/{path}")).status,
            404,
            "{path}"
        );
    }
}

/// Token requests in `keystone`'s access log once it shows `expected` (Keystone writes the line
/// just after its answer, so it may lag the sidecar by a moment), or after 5 s.
fn logged_token_requests(keystone: &Keystone, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = keystone.token_requests();
        if seen >= expected || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Item 2/5: the sidecar's Keystone tokens live 8 s (a Keystone of their own on the same
/// database, whose log counts exactly the sidecar's token requests). A cold burst of concurrent
/// requests makes one token request; steady concurrent load over several lifetimes never fails
/// and makes one request per refresh (at 80% of the life), never one per client request.
#[test]
fn sidecar_tokens_refresh_before_expiry_under_concurrent_load_one_request_at_a_time() {
    const LIFE: u64 = 8;
    /// Cold burst width; the steady load uses half as many threads (Keystone validates every
    /// new token once per cluster, one Python process on two shared cores).
    const THREADS: usize = 12;
    let env = env();
    let short = env.keystone.sibling(LIFE).expect("short-token Keystone");
    let sidecar_user = env.user("member");
    let client = env.user("member");
    let target = account(&sidecar_user.project);
    let acct = account(&client.project);
    let prefix = unique_name("load");
    let sidecar = Sidecar::start(
        env.a.proxy_port(),
        Some(&table(
            &[cluster(
                "b",
                &env.b.proxy_url(),
                &password_auth(&short.url(), &sidecar_user),
            )],
            &[route(&acct, &prefix, "b", Some(&target))],
        )),
    );
    let token = env.token(&client);
    let base = format!("{}/v1/{acct}", sidecar.url());
    assert_eq!(short.token_requests(), 0);

    // Cold start: every thread's first request at once.
    let first_fetch = Instant::now();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (barrier, base, token, prefix) = (&barrier, &base, &token, &prefix);
            s.spawn(move || {
                barrier.wait();
                ok(
                    &req("PUT", &format!("{base}/{prefix}-{t}"), token, &[], b""),
                    "cold container PUT",
                );
            });
        }
    });
    assert_eq!(sidecar.metric(TOKEN_FETCHES, &[("cluster", "b")]), 1.0);
    assert_eq!(logged_token_requests(&short, 1), 1, "{}", short.log_tail());

    let run = Duration::from_secs(3 * LIFE);
    let started = Instant::now();
    let requests = AtomicU64::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..THREADS / 2 {
            let (base, token, prefix, requests, failures) =
                (&base, &token, &prefix, &requests, &failures);
            s.spawn(move || {
                let mut n = 0u64;
                while started.elapsed() < run {
                    let object = format!("{base}/{prefix}-{t}/o{}", n % 4);
                    let body = format!("thread {t} round {n}");
                    let fail = |what: &str, r: &HttpResponse| {
                        failures.lock().unwrap().push(format!(
                            "{:>6.2}s {what}: {} {:.90}",
                            started.elapsed().as_secs_f64(),
                            r.status,
                            r.body_text()
                        ))
                    };
                    let put = req("PUT", &object, token, &[], body.as_bytes());
                    if put.status != 201 {
                        fail("PUT", &put);
                    }
                    let get = req("GET", &object, token, &[], b"");
                    if get.status != 200 || get.body != body.as_bytes() {
                        fail("GET", &get);
                    }
                    requests.fetch_add(2, Ordering::Relaxed);
                    n += 1;
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let failures = failures.into_inner().unwrap();
    let requests = requests.load(Ordering::Relaxed);
    let fetches = sidecar.metric(TOKEN_FETCHES, &[("cluster", "b")]);
    let seen_by_keystone = logged_token_requests(&short, fetches as usize) as f64;
    eprintln!(
        "{requests} requests in {elapsed:.1}s, {fetches} token requests ({seen_by_keystone} seen by Keystone), {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} requests failed:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    assert!(requests >= 60, "too little load: {requests} requests");
    assert_eq!(fetches, seen_by_keystone, "{}", short.log_tail());
    // One fetch per 80% of a lifetime (6.4 s) since the first, plus the first, plus one renewal
    // should a request on a slow machine carry its token past expiry (a 401): never per request.
    let refresh_every = 0.8 * LIFE as f64;
    let since_first = first_fetch.elapsed().as_secs_f64();
    assert!(
        fetches >= 3.0,
        "tokens were not refreshed: {fetches} fetches in {elapsed:.1}s"
    );
    assert!(
        fetches <= (since_first / refresh_every).floor() + 2.0,
        "{fetches} token requests in {elapsed:.1}s: more than one per refresh"
    );
}

/// Item 2: when the target refuses the sidecar's token (here: Keystone revoked every token of
/// the sidecar's user), the sidecar fetches a new one once and retries the request, body
/// included; clients never see the 401.
#[test]
fn a_refused_sidecar_token_is_renewed_once_and_the_request_retried_with_its_body() {
    let env = env();
    let sidecar_user = env.user("member");
    let client = env.user("member");
    let target = account(&sidecar_user.project);
    let acct = account(&client.project);
    let prefix = unique_name("retry");
    let sidecar = Sidecar::start(
        env.a.proxy_port(),
        Some(&table(
            &[cluster(
                "b",
                &env.b.proxy_url(),
                &password_auth(&env.keystone.url(), &sidecar_user),
            )],
            &[route(&acct, &prefix, "b", Some(&target))],
        )),
    );
    let token = env.token(&client);
    let container = format!("{prefix}-c");
    let base = format!("{}/v1/{acct}/{container}", sidecar.url());
    ok(&req("PUT", &base, &token, &[], b""), "container PUT");
    assert_eq!(sidecar.metric(TOKEN_FETCHES, &[("cluster", "b")]), 1.0);

    // Revokes the sidecar's token (a password change revokes all of a user's tokens).
    env.keystone
        .set_password(&sidecar_user.id, &sidecar_user.password)
        .expect("password change");
    // Keystone compares revocations with token issue times in whole seconds: a token issued in
    // the same second would count as revoked too. Wait for the next second to begin.
    let revoked_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    while SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        <= revoked_at
    {
        std::thread::sleep(Duration::from_millis(50));
    }

    // PUTs with a body until b (whose token cache lasts seconds) refuses the old token; the
    // PUT that meets the refusal must succeed through the renewal, its body intact.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut written = Vec::new();
    while sidecar.metric(TOKEN_FETCHES, &[("cluster", "b")]) < 2.0 {
        assert!(
            Instant::now() < deadline,
            "b never refused the revoked token"
        );
        let i = written.len();
        let body = format!("object {i} ").repeat(1000);
        let put = req("PUT", &format!("{base}/o{i}"), &token, &[], body.as_bytes());
        assert_eq!(put.status, 201, "PUT {i}: {}", put.body_text());
        written.push(body);
    }
    for i in 0..3 {
        let extra = format!("after {i}");
        let put = req(
            "PUT",
            &format!("{base}/o{}", written.len()),
            &token,
            &[],
            extra.as_bytes(),
        );
        assert_eq!(put.status, 201);
        written.push(extra);
    }
    assert_eq!(sidecar.metric(TOKEN_FETCHES, &[("cluster", "b")]), 2.0);
    for (i, body) in written.iter().enumerate() {
        let stored = env.stored(&env.b, &format!("{target}/{container}/o{i}"));
        assert_eq!((stored.status, &stored.body_text()), (200, body), "o{i}");
    }
}

/// A JSON string is a YAML double-quoted scalar: PEMs go into routing tables this way.
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// Keystone behind https with a CA and a name of its own, the target's Swift behind https with
/// another CA and name: the Keystone credentials' `tls` is what verifies the authUrl (the
/// cluster's `tls`, which trusts only Swift's CA, would refuse Keystone's certificate), and a
/// Keystone certificate the credentials do not trust is a clear 503.
#[test]
fn an_https_keystone_is_verified_with_the_credentials_tls_not_the_clusters() {
    let env = env();
    let (keystone_ca, swift_ca) = (Ca::new("keystone CA"), Ca::new("swift CA"));
    let keystone_front = Front::start(
        env.keystone.port(),
        server_config(&keystone_ca.server(&["keystone.test"]), None),
    );
    let swift_front = Front::start(
        env.b.proxy_port(),
        server_config(&swift_ca.server(&["swift-b.test"]), None),
    );
    let sidecar_user = env.user("member");
    let client = env.user("member");
    let target = account(&sidecar_user.project);
    let acct = account(&client.project);
    let prefix = unique_name("tls");
    let routing = |revision: u64, keystone_trust: &str| {
        format!(
            "revision: {revision}\nclusters:\n- name: b\n  endpoints: [\"{}\"]\n  tls: {{caPem: {}, serverName: swift-b.test}}\n  \
             auth: {{mode: Credentials, credentials: {{type: keystone, authUrl: \"{}/v3\", userName: \"{}\", \
             userDomainId: default, password: \"{}\", projectId: \"{}\", tls: {{caPem: {}, serverName: keystone.test}}}}}}\n\
             routes:\n{}\n",
            swift_front.url(),
            yaml_string(&swift_ca.pem),
            keystone_front.url(),
            sidecar_user.name,
            sidecar_user.password,
            sidecar_user.project,
            yaml_string(keystone_trust),
            route(&acct, &prefix, "b", Some(&target)),
        )
    };
    let sidecar = Sidecar::start(env.a.proxy_port(), Some(&routing(1, &keystone_ca.pem)));
    let token = env.token(&client);
    let container = format!("{}/v1/{acct}/{prefix}-c", sidecar.url());
    ok(&req("PUT", &container, &token, &[], b""), "container PUT");
    ok(
        &req("PUT", &format!("{container}/o"), &token, &[], b"over tls"),
        "object PUT",
    );
    let stored = env.stored(&env.b, &format!("{target}/{prefix}-c/o"));
    assert_eq!(
        (stored.status, stored.body_text().as_str()),
        (200, "over tls")
    );
    assert!(keystone_front.handshakes() >= 1 && swift_front.handshakes() >= 1);

    // Keystone's certificate checked against Swift's CA: refused, and the client is told why.
    let pushed = sidecar.push(&routing(2, &swift_ca.pem));
    assert_eq!(pushed.status, 200, "{}", pushed.body_text());
    let refused = req("GET", &format!("{container}/o"), &token, &[], b"");
    let text = refused.body_text();
    assert_eq!(refused.status, 503, "{text}");
    assert!(
        text.contains("cluster b") && text.contains(&keystone_front.url()),
        "{text}"
    );
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert!(!keystone_front.refusals().is_empty());
}

/// What Swift 2.38 + keystoneauth answers to the sidecar's local checks (`sidecar/src/auth.rs`:
/// a HEAD of a container name far over Swift's limit for reads, a DELETE below it for writes, an
/// account POST with an over-long metadata name for owners), pinned per kind of client, because
/// the Credentials design reads 404 (400 for the owner check) as "authorized". A Swift or
/// keystonemiddleware upgrade that changes one of these fails here, naming it.
#[test]
fn keystoneauth_answers_the_local_checks_as_the_sidecar_reads_them() {
    let env = env();
    let owner = env.user("member");
    let reader = env.member_of(&owner.project, "reader");
    let other = env.user("member");
    let roleless = unique_name("nobody");
    env.keystone
        .create_user(&roleless, "nobody-pw")
        .expect("user without roles");
    let clients: [(&str, Option<String>); 6] = [
        ("member", Some(env.token(&owner))),
        ("reader", Some(env.token(&reader))),
        ("no token", None),
        ("another project", Some(env.token(&other))),
        ("reseller admin", Some(env.reseller_token.clone())),
        (
            "unscoped",
            Some(
                env.keystone
                    .unscoped_token(&roleless, "nobody-pw")
                    .expect("unscoped")
                    .token,
            ),
        ),
    ];
    let account_url = format!("{}/v1/{}", env.a.proxy_url(), account(&owner.project));
    let probe = format!("{account_url}/swiftfed-authz-probe-{}", "x".repeat(1100));
    let owner_probe = format!("x-account-meta-swiftfed-owner-probe-{}", "x".repeat(1000));
    let answers = |method: &str, url: &str, extra: &[(&str, &str)]| -> Vec<u16> {
        clients
            .iter()
            .map(|(_, token)| {
                let mut headers = extra.to_vec();
                if let Some(t) = token {
                    headers.push(("X-Auth-Token", t));
                }
                swiftfed_tests::http_request(method, url, &headers, b"")
                    .expect("request")
                    .status
            })
            .collect()
    };
    let labels: Vec<&str> = clients.iter().map(|(l, _)| *l).collect();
    assert_eq!(
        answers("HEAD", &probe, &[]),
        [404, 404, 401, 403, 404, 403],
        "read check for {labels:?}"
    );
    assert_eq!(
        answers("DELETE", &format!("{probe}/swiftfed-authz-probe"), &[]),
        [404, 403, 401, 403, 404, 403],
        "write check for {labels:?}"
    );
    assert_eq!(
        answers("POST", &account_url, &[(&owner_probe, "1")]),
        [400, 403, 401, 403, 400, 403],
        "owner check for {labels:?}"
    );

    // Container-level checks on an ACL shadow (sidecar/src/auth.rs `check_container`), with a
    // `project_id:user_id` ACL for the other project's user: listing (2xx), object read (404),
    // object write (400, the name refused after authorization).
    let shadow = format!("{account_url}/{}", unique_name("shadow"));
    let object = format!("{shadow}/swiftfed-authz-probe-{}", "x".repeat(1100));
    let owner_token = clients[0].1.clone().expect("member token");
    let acl = format!("{}:{}", other.project, other.id);
    let r = req(
        "PUT",
        &shadow,
        &owner_token,
        &[("X-Container-Read", &acl)],
        b"",
    );
    assert_eq!(r.status, 201);
    let zero = [("Content-Length", "0")];
    assert_eq!(
        answers("HEAD", &shadow, &[]),
        [204, 204, 401, 204, 204, 403],
        "listing check, read ACL, for {labels:?}"
    );
    assert_eq!(
        answers("HEAD", &object, &[]),
        [404, 404, 401, 404, 404, 403],
        "object read check, read ACL, for {labels:?}"
    );
    assert_eq!(
        answers("PUT", &object, &zero),
        [400, 403, 401, 403, 400, 403],
        "object write check, read ACL, for {labels:?}"
    );
    let r = req(
        "POST",
        &shadow,
        &owner_token,
        &[("X-Container-Write", &acl)],
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        answers("PUT", &object, &zero),
        [400, 403, 401, 400, 400, 403],
        "object write check, write ACL, for {labels:?}"
    );
    let r = req(
        "POST",
        &shadow,
        &owner_token,
        &[("X-Container-Read", ".r:*")],
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        answers("HEAD", &object, &[]),
        [404, 404, 404, 404, 404, 404],
        "object read check, .r:*, for {labels:?}"
    );
    assert_eq!(
        answers("HEAD", &shadow, &[]),
        [204, 204, 401, 403, 204, 403],
        "listing check, .r:* without .rlistings, for {labels:?}"
    );
    let r = req("DELETE", &shadow, &owner_token, &[], b"");
    assert_eq!(r.status, 204, "the probes left the shadow empty");
}

/// python-swiftclient with Keystone v3 auth, sent to the sidecar by Keystone's catalog: upload,
/// list and download on a Passthrough route and on a Credentials route; the objects land on the
/// target.
#[test]
fn python_swiftclient_with_keystone_v3_works_through_the_sidecar() {
    let env = env();
    let sidecar_user = env.user("member");
    let client = env.user("member");
    let acct = account(&client.project);
    let target = account(&sidecar_user.project);
    let (pt, cr) = (unique_name("pt"), unique_name("cr"));
    let b = env.b.proxy_url();
    let sidecar = Sidecar::start(
        env.a.proxy_port(),
        Some(&table(
            &[
                cluster("pass", &b, "{mode: Passthrough}"),
                cluster(
                    "cred",
                    &b,
                    &password_auth(&env.keystone.url(), &sidecar_user),
                ),
            ],
            &[
                route(&acct, &pt, "pass", None),
                route(&acct, &cr, "cred", Some(&target)),
            ],
        )),
    );
    let dir = swiftfed_tests::scratch_dir()
        .expect("scratch")
        .join(unique_name("cli"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("hello.txt");
    std::fs::write(&file, "hello from swiftclient").expect("file");
    // The catalog sends clients to the sidecar, as a deployment's would.
    let region = unique_name("region");
    env.keystone
        .add_object_store_endpoint(
            &region,
            &format!("{}/v1/AUTH_$(project_id)s", sidecar.url()),
        )
        .expect("catalog endpoint");
    let swift = |args: &[&str]| {
        let out = env
            .keystone
            .swift_cli(
                &client.name,
                &client.password,
                &client.project,
                &region,
                args,
            )
            .expect("swift CLI");
        assert!(
            out.status.success(),
            "swift {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let path = file.to_str().expect("path");
    for (container, stored_in) in [(&pt, &acct), (&cr, &target)] {
        swift(&["upload", "--object-name", "hello.txt", container, path]);
        assert_eq!(swift(&["list", container]).trim(), "hello.txt");
        let copy = dir.join(format!("{container}.txt"));
        let copy_path = copy.to_str().expect("path");
        swift(&["download", container, "hello.txt", "-o", copy_path]);
        assert_eq!(
            std::fs::read_to_string(&copy).expect("downloaded"),
            "hello from swiftclient"
        );
        let stored = env.stored(&env.b, &format!("{stored_in}/{container}/hello.txt"));
        assert_eq!(
            (stored.status, stored.body_text().as_str()),
            (200, "hello from swiftclient")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// keystoneauth `project_id:user_id` container ACLs set by the owner through the sidecar on a
/// Credentials route: the ACL user of another project reads (and, with a write ACL, writes) on
/// the target exactly as the local cluster allows it on the mirrored ACLs; others get the local
/// 403 and the target is untouched.
#[test]
fn keystone_project_user_container_acls_decide_through_the_sidecar() {
    let env = env();
    let sidecar_user = env.user("member");
    let owner = env.user("member");
    let acl_user = env.user("member");
    let stranger = env.user("member");
    let target = account(&sidecar_user.project);
    let acct = account(&owner.project);
    let c = unique_name("kacl");
    let sidecar = Sidecar::start(
        env.a.proxy_port(),
        Some(&table(
            &[cluster(
                "b",
                &env.b.proxy_url(),
                &password_auth(&env.keystone.url(), &sidecar_user),
            )],
            &[route(&acct, &c, "b", Some(&target))],
        )),
    );
    let base = format!("{}/v1/{acct}/{c}", sidecar.url());
    let local = format!("{}/v1/{acct}/{c}", env.a.proxy_url());
    let (owner_token, user_token, stranger_token) = (
        env.token(&owner),
        env.token(&acl_user),
        env.token(&stranger),
    );
    let acl = format!("{}:{}", acl_user.project, acl_user.id);
    ok(
        &req(
            "PUT",
            &base,
            &owner_token,
            &[("X-Container-Read", &acl)],
            b"",
        ),
        "container PUT with a read ACL",
    );
    ok(
        &req("PUT", &format!("{base}/o"), &owner_token, &[], b"kept"),
        "object PUT",
    );

    let got = req("GET", &format!("{base}/o"), &user_token, &[], b"");
    assert_eq!((got.status, got.body_text().as_str()), (200, "kept"));
    let listing = req("GET", &base, &user_token, &[], b"");
    assert_eq!((listing.status, listing.body_text().trim()), (200, "o"));
    let refused = req("PUT", &format!("{local}/new"), &user_token, &[], b"x").status;
    assert_eq!(refused, 403, "the read-ACL user's write, locally");
    assert_eq!(
        req("PUT", &format!("{base}/new"), &user_token, &[], b"x").status,
        refused
    );
    assert_eq!(env.stored(&env.b, &format!("{target}/{c}/new")).status, 404);
    for url in [format!("{base}/o"), base.clone()] {
        assert_eq!(
            req("GET", &url, &stranger_token, &[], b"").status,
            403,
            "{url}"
        );
    }

    ok(
        &req(
            "POST",
            &base,
            &owner_token,
            &[("X-Container-Write", &acl)],
            b"",
        ),
        "write ACL POST",
    );
    ok(
        &req("PUT", &format!("{base}/w"), &user_token, &[], b"by acl"),
        "ACL user PUT",
    );
    let stored = env.stored(&env.b, &format!("{target}/{c}/w"));
    assert_eq!(
        (stored.status, stored.body_text().as_str()),
        (200, "by acl")
    );
    assert_eq!(
        req("PUT", &format!("{base}/s"), &stranger_token, &[], b"x").status,
        403
    );
    assert_eq!(env.stored(&env.b, &format!("{target}/{c}/s")).status, 404);
    // The shadow holds the ACLs and no object.
    let shadow = env.stored(&env.a, &format!("{acct}/{c}"));
    assert_eq!((shadow.status, shadow.body_text()), (204, String::new()));
    assert_eq!(shadow.header("x-container-write"), Some(acl.as_str()));
}
