//! A real OpenStack Keystone on 127.0.0.1: Debian's `python3-keystone` with an sqlite database
//! and fernet keys in its own dir, set up with `keystone-manage` (db_sync, fernet_setup,
//! bootstrap) and served by `tests/swift/launch.py keystone` under a watchdog.
//!
//! Tests create what they need through Keystone's REST API: projects, users, role assignments,
//! application credentials, tokens. A [`Keystone::sibling`] serves the same database and keys
//! with another token lifetime, so a test can hand one client short-lived tokens that every
//! cluster validating against the main Keystone still accepts until they expire.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::env;
use crate::error::{HarnessError, Result};
use crate::http::{request_with_timeout, HttpResponse};
use crate::process;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(3);

/// The bootstrap admin: `admin` in domain `default`, admin of project `admin` and of the system.
pub const KEYSTONE_ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "keystone-admin-secret";
/// The Python that has Keystone (Debian's, not the Swift virtualenv).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";
const KEYSTONE_MANAGE: &str = "/usr/bin/keystone-manage";

/// What a token request answered.
#[derive(Clone, Debug)]
pub struct KeystoneToken {
    pub token: String,
    pub user_id: String,
    /// Project the token is scoped to (empty for an unscoped token).
    pub project_id: String,
    pub expires_at: String,
}

pub struct Keystone {
    dir: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
    /// Set on siblings: the main instance owns the database and removes the dir.
    owns_dir: bool,
    /// One API call at a time: sqlite fails a second concurrent writer ("database is locked")
    /// instead of waiting, and tests call from many threads.
    api: std::sync::Mutex<()>,
}

impl Keystone {
    /// Sets up a fresh Keystone (tokens live `token_expiration` seconds) and waits until it
    /// serves requests.
    pub fn start(name: &str, token_expiration: u64) -> Result<Keystone> {
        if !Path::new(KEYSTONE_MANAGE).exists() {
            return Err(HarnessError::MissingDependency(format!(
                "Keystone ({KEYSTONE_MANAGE} not found)"
            )));
        }
        let dir = env::process_dir()?.join(format!("{name}-{}", env::next_cluster_number()));
        fs::create_dir_all(&dir)
            .map_err(|e| HarnessError::io(format!("create {}", dir.display()), e))?;
        let mut keystone = Keystone {
            log: dir.join("keystone.log"),
            dir,
            port: env::free_port(),
            child: None,
            owns_dir: true,
            api: Default::default(),
        };
        let conf = keystone.write_conf("keystone.conf", token_expiration)?;
        let url = keystone.url();
        let setup: [Vec<&str>; 4] = [
            vec!["db_sync"],
            vec![
                "fernet_setup",
                "--keystone-user",
                "root",
                "--keystone-group",
                "root",
            ],
            vec![
                "credential_setup",
                "--keystone-user",
                "root",
                "--keystone-group",
                "root",
            ],
            vec![
                "bootstrap",
                "--bootstrap-password",
                ADMIN_PASSWORD,
                "--bootstrap-public-url",
                &url,
                "--bootstrap-region-id",
                "RegionOne",
            ],
        ];
        for args in setup {
            keystone.manage(&conf, &args)?;
        }
        keystone.enable_wal()?;
        keystone.spawn(&conf)?;
        keystone.wait_ready()?;
        Ok(keystone)
    }

    /// Another Keystone server on the same database and keys whose tokens live
    /// `token_expiration` seconds. Its log counts only the requests sent to it.
    pub fn sibling(&self, token_expiration: u64) -> Result<Keystone> {
        let port = env::free_port();
        let mut sibling = Keystone {
            log: self.dir.join(format!("keystone-{port}.log")),
            dir: self.dir.clone(),
            port,
            child: None,
            owns_dir: false,
            api: Default::default(),
        };
        let conf = sibling.write_conf(&format!("keystone-{port}.conf"), token_expiration)?;
        sibling.spawn(&conf)?;
        sibling.wait_ready()?;
        Ok(sibling)
    }

    /// `http://127.0.0.1:PORT` (Keystone's base; the API is under `/v3`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn v3_url(&self) -> String {
        format!("{}/v3", self.url())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bootstrap admin's password (for services such as Swift's `authtoken`).
    pub fn admin_password(&self) -> &'static str {
        ADMIN_PASSWORD
    }

    /// How many token requests (`POST /v3/auth/tokens`) this server has answered.
    pub fn token_requests(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("access POST /v3/auth/tokens "))
            .count()
    }

    pub fn log_tail(&self) -> String {
        process::tail(&self.log, 30)
    }

    /// A project-scoped token for the bootstrap admin.
    pub fn admin_token(&self) -> Result<String> {
        Ok(self
            .password_token(KEYSTONE_ADMIN, ADMIN_PASSWORD, None)?
            .token)
    }

    /// Password authentication (users and projects in domain `default`); scoped to `project_id`,
    /// or to the admin project when `None` (the bootstrap admin only).
    pub fn password_token(
        &self,
        user: &str,
        password: &str,
        project_id: Option<&str>,
    ) -> Result<KeystoneToken> {
        password_token_at(&self.url(), user, password, project_id)
    }

    /// An unscoped token (no project, hence no roles) for a user of domain `default`.
    pub fn unscoped_token(&self, user: &str, password: &str) -> Result<KeystoneToken> {
        self.token(
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}}}}),
        )
    }

    /// Application credential authentication (the credential carries its scope).
    pub fn app_credential_token(&self, id: &str, secret: &str) -> Result<KeystoneToken> {
        self.token(json!({"auth": {"identity": {
            "methods": ["application_credential"],
            "application_credential": {"id": id, "secret": secret},
        }}}))
    }

    fn token(&self, body: Value) -> Result<KeystoneToken> {
        token_at(&self.url(), body)
    }

    /// Registers an `object-store` endpoint in the catalog, in a region of its own (so tests
    /// do not see each other's): `url` like `http://127.0.0.1:PORT/v1/AUTH_$(project_id)s`,
    /// which Keystone fills in per token. Clients that follow the catalog then go there.
    pub fn add_object_store_endpoint(&self, region: &str, url: &str) -> Result<()> {
        let admin = self.admin_token()?;
        let services = self.call(
            "GET",
            "/services?type=object-store",
            Some(&admin),
            None,
            200,
        )?;
        let service_id = match json_body(&services)["services"][0]["id"].as_str() {
            Some(id) => id.to_string(),
            None => self.created_id(
                "/services",
                &admin,
                json!({"service": {"type": "object-store", "name": "swift"}}),
                "service",
            )?,
        };
        let region_body = json!({"region": {"id": region}});
        self.call("POST", "/regions", Some(&admin), Some(region_body), 201)?;
        let endpoint = json!({"endpoint": {
            "service_id": service_id, "interface": "public", "url": url, "region_id": region}});
        self.call("POST", "/endpoints", Some(&admin), Some(endpoint), 201)
            .map(drop)
    }

    /// Runs python-swiftclient's `swift` CLI with Keystone v3 password auth here (user and
    /// project in domain `default`), taking the storage URL from the catalog's `object-store`
    /// endpoint in `region`; the output whatever the exit status.
    pub fn swift_cli(
        &self,
        user: &str,
        password: &str,
        project_id: &str,
        region: &str,
        args: &[&str],
    ) -> Result<std::process::Output> {
        let v3 = self.v3_url();
        let mut cmd = crate::cli::swift_command();
        cmd.args(["--auth-version", "3", "--os-auth-url", &v3])
            .args(["--os-username", user, "--os-password", password])
            .args([
                "--os-user-domain-id",
                "default",
                "--os-project-id",
                project_id,
            ])
            .args(["--os-region-name", region])
            .args(args);
        cmd.output().map_err(|e| {
            HarnessError::io(
                format!("run swift --os-auth-url {v3} {}", args.join(" ")),
                e,
            )
        })
    }

    /// Revokes a token (as the admin).
    pub fn revoke_token(&self, token: &str) -> Result<()> {
        let admin = self.admin_token()?;
        let _one_at_a_time = self.api.lock().unwrap_or_else(|p| p.into_inner());
        let resp = request_with_timeout(
            "DELETE",
            &format!("{}/auth/tokens", self.v3_url()),
            &[("X-Auth-Token", &admin), ("X-Subject-Token", token)],
            b"",
            REQUEST_TIMEOUT,
        )?;
        if resp.status != 204 {
            return Err(self.fail("DELETE", "/auth/tokens", describe(&resp)));
        }
        Ok(())
    }

    /// Creates a project in domain `default`; returns its id.
    pub fn create_project(&self, name: &str) -> Result<String> {
        let admin = self.admin_token()?;
        let body = json!({"project": {"name": name, "domain_id": "default"}});
        self.created_id("/projects", &admin, body, "project")
    }

    /// Creates a user in domain `default`; returns its id.
    pub fn create_user(&self, name: &str, password: &str) -> Result<String> {
        let admin = self.admin_token()?;
        let body = json!({"user": {"name": name, "domain_id": "default", "password": password}});
        self.created_id("/users", &admin, body, "user")
    }

    /// Sets a user's password (as the admin). Keystone revokes every token the user had, even
    /// when the password is the same.
    pub fn set_password(&self, user_id: &str, password: &str) -> Result<()> {
        let admin = self.admin_token()?;
        let body = json!({"user": {"password": password}});
        self.call(
            "PATCH",
            &format!("/users/{user_id}"),
            Some(&admin),
            Some(body),
            200,
        )
        .map(drop)
    }

    /// Creates a role (e.g. `ResellerAdmin`); returns its id.
    pub fn create_role(&self, name: &str) -> Result<String> {
        let admin = self.admin_token()?;
        self.created_id("/roles", &admin, json!({"role": {"name": name}}), "role")
    }

    /// Gives `user_id` the role named `role` on `project_id`.
    pub fn grant(&self, project_id: &str, user_id: &str, role: &str) -> Result<()> {
        let admin = self.admin_token()?;
        let role_id = self.role_id(&admin, role)?;
        let path = format!("/projects/{project_id}/users/{user_id}/roles/{role_id}");
        self.call("PUT", &path, Some(&admin), None, 204).map(drop)
    }

    fn role_id(&self, admin: &str, role: &str) -> Result<String> {
        let path = format!("/roles?name={role}");
        let r = self.call("GET", &path, Some(admin), None, 200)?;
        json_body(&r)["roles"][0]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.fail("GET", &path, format!("no role named {role}")))
    }

    /// An application credential of `user_id` (authenticated by `user_token`, scoped to the
    /// project it acts on) with the token's roles; returns (id, secret).
    pub fn create_app_credential(
        &self,
        user_id: &str,
        user_token: &str,
        name: &str,
    ) -> Result<(String, String)> {
        let path = format!("/users/{user_id}/application_credentials");
        let body = json!({"application_credential": {"name": name}});
        let r = self.call("POST", &path, Some(user_token), Some(body), 201)?;
        let parsed = json_body(&r);
        let field = |f: &str| {
            parsed["application_credential"][f]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| self.fail("POST", &path, format!("no {f} in the answer")))
        };
        Ok((field("id")?, field("secret")?))
    }

    fn created_id(&self, path: &str, admin: &str, body: Value, kind: &str) -> Result<String> {
        let r = self.call("POST", path, Some(admin), Some(body), 201)?;
        json_body(&r)[kind]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| self.fail("POST", path, format!("no {kind}.id in the answer")))
    }

    /// One request to `/v3<path>`; an answer other than `want` is an error with Keystone's text.
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        want: u16,
    ) -> Result<HttpResponse> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let _one_at_a_time = self.api.lock().unwrap_or_else(|p| p.into_inner());
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(t) = token {
            headers.push(("X-Auth-Token", t));
        }
        let resp = request_with_timeout(
            method,
            &format!("{}{path}", self.v3_url()),
            &headers,
            body.as_bytes(),
            REQUEST_TIMEOUT,
        )?;
        if resp.status != want {
            return Err(self.fail(method, path, describe(&resp)));
        }
        Ok(resp)
    }

    fn fail(&self, method: &str, path: &str, detail: String) -> HarnessError {
        HarnessError::Http {
            method: method.to_string(),
            url: format!("{}{path}", self.v3_url()),
            detail,
        }
    }

    fn write_conf(&self, file: &str, token_expiration: u64) -> Result<PathBuf> {
        let dir = self.dir.display();
        let text = format!(
            "[DEFAULT]\n\
             log_file = {log}\n\
             \n\
             [database]\n\
             connection = sqlite:///{dir}/keystone.db\n\
             \n\
             [token]\n\
             provider = fernet\n\
             expiration = {token_expiration}\n\
             \n\
             [fernet_tokens]\n\
             key_repository = {dir}/fernet-keys\n\
             \n\
             [fernet_receipts]\n\
             key_repository = {dir}/fernet-receipts\n\
             \n\
             [credential]\n\
             key_repository = {dir}/credential-keys\n\
             \n\
             [cache]\n\
             enabled = true\n\
             backend = dogpile.cache.memory\n",
            log = self.log.display(),
        );
        let path = self.dir.join(file);
        fs::write(&path, text)
            .map_err(|e| HarnessError::io(format!("write {}", path.display()), e))?;
        Ok(path)
    }

    fn manage(&self, conf: &Path, args: &[&str]) -> Result<()> {
        let output = Command::new(KEYSTONE_MANAGE)
            .arg("--config-file")
            .arg(conf)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| HarnessError::io(format!("run {KEYSTONE_MANAGE}"), e))?;
        if !output.status.success() {
            return Err(HarnessError::Command {
                command: format!("keystone-manage {}", args[0]),
                status: output.status.to_string(),
                output: format!(
                    "{}\n{}",
                    String::from_utf8_lossy(&output.stderr),
                    self.log_tail()
                ),
            });
        }
        Ok(())
    }

    /// Write-ahead logging: readers no longer block writers, so a sibling server's open read
    /// transaction cannot make a write (a revocation, say) fail with "database is locked".
    fn enable_wal(&self) -> Result<()> {
        let db = self.dir.join("keystone.db");
        let output = Command::new(SYSTEM_PYTHON)
            .args([
                "-c",
                "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL')",
            ])
            .arg(&db)
            .output()
            .map_err(|e| HarnessError::io(format!("run {SYSTEM_PYTHON}"), e))?;
        if !output.status.success() {
            return Err(HarnessError::Command {
                command: format!("PRAGMA journal_mode=WAL on {}", db.display()),
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(())
    }

    fn spawn(&mut self, conf: &Path) -> Result<()> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| HarnessError::io(format!("open {}", self.log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| HarnessError::io("dup keystone log", e))?;
        let child = Command::new(SYSTEM_PYTHON)
            .arg(env::launcher())
            .arg("keystone")
            .arg("--conf")
            .arg(conf)
            .args(["--port", &self.port.to_string()])
            .args(["--watch-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                HarnessError::io(format!("spawn {SYSTEM_PYTHON} launch.py keystone"), e)
            })?;
        self.child = Some(child);
        Ok(())
    }

    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut last = String::from("not probed yet");
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                last = format!("process exited ({status}); last probe: {last}");
                break;
            }
            match request_with_timeout("GET", &self.v3_url(), &[], b"", Duration::from_secs(2)) {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => last = format!("GET /v3 answered {}", r.status),
                Err(e) => last = e.to_string(),
            }
            if started.elapsed() > READY_TIMEOUT {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(HarnessError::NotReady {
            cluster: "keystone".into(),
            server: format!("keystone on port {}", self.port),
            detail: format!("after {:.1?}: {last}", started.elapsed()),
            log_tail: self.log_tail(),
            log: self.log.clone(),
        })
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::stop_all(&mut [&mut child], STOP_GRACE);
        }
        if self.owns_dir && std::env::var_os("SWIFTFED_KEEP_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Password token from the Keystone at `url` (see [`Keystone::password_token`]); also used by
/// the readiness probe of clusters that authenticate with it.
pub(crate) fn password_token_at(
    url: &str,
    user: &str,
    password: &str,
    project_id: Option<&str>,
) -> Result<KeystoneToken> {
    let scope = match project_id {
        Some(id) => json!({"project": {"id": id}}),
        None => json!({"project": {"name": "admin", "domain": {"id": "default"}}}),
    };
    token_at(
        url,
        json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": scope,
        }}),
    )
}

fn token_at(url: &str, body: Value) -> Result<KeystoneToken> {
    let endpoint = format!("{url}/v3/auth/tokens");
    let resp = request_with_timeout(
        "POST",
        &endpoint,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
        REQUEST_TIMEOUT,
    )?;
    let fail = |detail: String| HarnessError::Http {
        method: "POST".into(),
        url: endpoint.clone(),
        detail,
    };
    if resp.status != 201 {
        return Err(fail(describe(&resp)));
    }
    let token = resp
        .header("X-Subject-Token")
        .ok_or_else(|| fail("no X-Subject-Token".into()))?
        .to_string();
    let parsed = json_body(&resp);
    let field = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok(KeystoneToken {
        token,
        user_id: field(&parsed["token"]["user"]["id"]),
        project_id: field(&parsed["token"]["project"]["id"]),
        expires_at: field(&parsed["token"]["expires_at"]),
    })
}

fn json_body(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn describe(r: &HttpResponse) -> String {
    format!("status {}: {}", r.status, r.body_text().trim())
}
