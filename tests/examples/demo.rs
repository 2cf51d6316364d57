//! The README's demo: two real Swift clusters, the sidecar in front of cluster A with
//! deploy/examples/routing-demo.yaml, and python-swiftclient pointed only at the sidecar.
//!
//!     scripts/demo

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use swiftfed_tests::{free_port, http_request, scratch_dir, swift_cli, SwiftCluster};

fn step(text: &str) {
    println!("\n==> {text}");
}

fn run_swift(auth_url: &str, args: &[&str]) -> String {
    println!(
        "$ swift -A {auth_url} -U test:tester -K testing {}",
        args.join(" ")
    );
    let out = swift_cli(auth_url, "test:tester", "testing", args)
        .unwrap_or_else(|e| fail(&e.to_string()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        print!("{}", String::from_utf8_lossy(&out.stderr));
    }
    text
}

fn fail(msg: &str) -> ! {
    eprintln!("demo failed: {msg}");
    std::process::exit(1)
}

struct Sidecar(Child);

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let sidecar_bin = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| fail("usage: demo <path to swiftfed-sidecar>"));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");

    step("starting two Swift clusters on 127.0.0.1 (A = local, B = federated target)");
    let a = SwiftCluster::start("demo-a").unwrap_or_else(|e| fail(&e.to_string()));
    let b = SwiftCluster::start("demo-b").unwrap_or_else(|e| fail(&e.to_string()));
    println!(
        "cluster A proxy: {}\ncluster B proxy: {}",
        a.proxy_url(),
        b.proxy_url()
    );

    step("writing the routing file (archive-* containers of AUTH_test live in B)");
    let template = std::fs::read_to_string(root.join("deploy/examples/routing-demo.yaml"))
        .unwrap_or_else(|e| fail(&format!("routing-demo.yaml: {e}")));
    let dir = scratch_dir().unwrap_or_else(|e| fail(&e.to_string()));
    let routing = dir.join("routing.yaml");
    std::fs::write(&routing, template.replace("${B_PROXY}", &b.proxy_url()))
        .unwrap_or_else(|e| fail(&e.to_string()));
    println!("{}", routing.display());

    let port = free_port();
    let admin = free_port();
    step(&format!(
        "starting swiftfed-sidecar on 127.0.0.1:{port} in front of cluster A"
    ));
    let log_path = dir.join("sidecar.log");
    let log = std::fs::File::create(&log_path).unwrap_or_else(|e| fail(&e.to_string()));
    let log_err = log.try_clone().unwrap_or_else(|e| fail(&e.to_string()));
    println!(
        "sidecar log (one access line per request): {}",
        log_path.display()
    );
    let child = Command::new(&sidecar_bin)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &format!("127.0.0.1:{}", a.proxy_port())])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--config")
        .arg(&routing)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| fail(&format!("{}: {e}", sidecar_bin.display())));
    let _sidecar = Sidecar(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !http_request("GET", &format!("http://127.0.0.1:{admin}/ready"), &[], b"")
        .is_ok_and(|r| r.status == 200)
    {
        if Instant::now() > deadline {
            fail("sidecar not ready");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let via = format!("http://127.0.0.1:{port}/auth/v1.0");
    let file = dir.join("hello.txt");
    std::fs::write(&file, "hello, federation\n").unwrap_or_else(|e| fail(&e.to_string()));
    let file = file.to_str().unwrap_or_else(|| fail("non-UTF-8 path"));

    step("python-swiftclient talks only to the sidecar: upload to a local and a routed container");
    run_swift(
        &via,
        &["upload", "photos", file, "--object-name", "hello.txt"],
    );
    run_swift(
        &via,
        &["upload", "archive-2024", file, "--object-name", "hello.txt"],
    );
    run_swift(&via, &["list", "archive-2024"]);
    run_swift(&via, &["stat", "archive-2024", "hello.txt"]);

    step("where the data landed, asked of each cluster directly");
    let in_a = run_swift(&a.auth_url(), &["list"]);
    let in_b = run_swift(&b.auth_url(), &["list"]);
    let ok = in_a.lines().any(|l| l == "photos")
        && !in_a.lines().any(|l| l == "archive-2024")
        && in_b.lines().any(|l| l == "archive-2024")
        && !in_b.lines().any(|l| l == "photos");
    if !ok {
        fail("containers did not land where the routes say");
    }

    step("through the sidecar the account still lists both, merged in order");
    let merged = run_swift(&via, &["list"]);
    let names: Vec<&str> = merged.lines().collect();
    if names != ["archive-2024", "photos"] {
        fail(&format!("merged listing was {names:?}"));
    }
    step("the sidecar's access log for the routed container");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("archive-2024")) {
        println!("{line}");
    }
    println!("\nphotos stayed in cluster A; archive-2024 lives in cluster B. Demo OK.");
}
