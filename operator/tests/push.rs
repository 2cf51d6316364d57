//! The pusher against real `swiftfed-sidecar` processes: ACK, NACK with reasons, retries with
//! backoff for an unreachable sidecar, a restarted sidecar catching up, and removal of routes.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use swiftfed_operator::push::{Outcome, Pusher, Target};
use swiftfed_tests::{free_port, http_request, scratch_dir, sidecar_bin, unique_name};

const TOKEN: &str = "push-test-token";

struct Sidecar {
    child: Child,
    admin: String,
}

impl Sidecar {
    fn start_on(admin_port: u16) -> Sidecar {
        let dir = scratch_dir().expect("scratch").join(unique_name("push"));
        std::fs::create_dir_all(&dir).expect("dir");
        let token = dir.join("token");
        std::fs::write(&token, TOKEN).expect("token");
        let child = Command::new(sidecar_bin())
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--upstream", "127.0.0.1:9"])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .arg("--admin-token-file")
            .arg(&token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sidecar");
        let admin = format!("127.0.0.1:{admin_port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http_request("GET", &format!("http://{admin}/ready"), &[], b"")
            .is_ok_and(|r| r.status == 200)
        {
            assert!(Instant::now() < deadline, "sidecar not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sidecar { child, admin }
    }

    fn revision(&self) -> u64 {
        let r = http_request(
            "GET",
            &format!("http://{}/v1/config", self.admin),
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            b"",
        )
        .expect("get config");
        let json: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        json["revision"].as_u64().expect("revision")
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn table(revision: u64, routes: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"revision": {revision}, "clusters": [{{"name": "ns/f/b", "endpoints": ["http://127.0.0.1:1"]}}], "routes": [{routes}]}}"#
    ))
}

const ROUTE: &str = r#"{"match": {"account": "AUTH_a"}, "target": {"cluster": "ns/f/b"}}"#;

fn target(s: &Sidecar, pod: &str) -> Target {
    Target {
        pod: pod.into(),
        admin: s.admin.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_nacks_and_unreachable_sidecars() {
    let (one, two) = (
        Sidecar::start_on(free_port()),
        Sidecar::start_on(free_port()),
    );
    let nobody = Target {
        pod: "ns/gone".into(),
        admin: format!("127.0.0.1:{}", free_port()),
    };
    let mut pusher = Pusher::default();
    pusher.first_backoff = Duration::from_millis(50);
    let targets = vec![
        target(&one, "ns/one"),
        nobody.clone(),
        target(&two, "ns/two"),
    ];

    let started = Instant::now();
    let results = pusher.push_all(&targets, table(3, ROUTE), TOKEN).await;
    assert_eq!(results[0], (targets[0].clone(), Outcome::Ack(3)));
    assert_eq!(results[2], (targets[2].clone(), Outcome::Ack(3)));
    match &results[1].1 {
        Outcome::Unreachable(e) => assert!(!e.is_empty()),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    // Three attempts with 50 ms then 100 ms between them: the backoff was waited for.
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!((one.revision(), two.revision()), (3, 3));

    // An invalid table: NACK with the sidecar's reasons, old table kept.
    let bad = Bytes::from(
        r#"{"revision": 4, "clusters": [], "routes": [{"match": {"account": "AUTH_a"}, "target": {"cluster": "nowhere"}}]}"#,
    );
    let results = pusher.push_all(&targets[..1], bad, TOKEN).await;
    match &results[0].1 {
        Outcome::Nack(reason) => assert!(
            reason.contains("routes[0].target.cluster") && reason.contains("nowhere"),
            "{reason}"
        ),
        other => panic!("expected Nack, got {other:?}"),
    }
    assert_eq!(one.revision(), 3);

    // A wrong token is a NACK that says so, not a silent failure.
    let results = pusher
        .push_all(&targets[..1], table(5, ROUTE), "wrong")
        .await;
    assert!(
        matches!(&results[0].1, Outcome::Nack(r) if r.contains("401")),
        "{:?}",
        results[0].1
    );

    // An older revision: the sidecar keeps its newer one and says which.
    let results = pusher.push_all(&targets[..1], table(2, ""), TOKEN).await;
    assert_eq!(results[0].1, Outcome::Newer(3));

    // Removing the routes is a newer table without them.
    let results = pusher.push_all(&targets, table(6, ""), TOKEN).await;
    assert_eq!(results[0].1, Outcome::Ack(6));
    assert_eq!(two.revision(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sidecar_gets_the_current_revision() {
    let port = free_port();
    let first = Sidecar::start_on(port);
    let pusher = Pusher::default();
    let t = target(&first, "ns/p");
    assert_eq!(
        pusher
            .push_all(std::slice::from_ref(&t), table(7, ROUTE), TOKEN)
            .await[0]
            .1,
        Outcome::Ack(7)
    );
    drop(first);
    // Restarted with no table (as a pod restart without the snapshot would be).
    let second = Sidecar::start_on(port);
    assert_eq!(second.revision(), 0);
    assert_eq!(
        pusher
            .push_all(std::slice::from_ref(&t), table(7, ROUTE), TOKEN)
            .await[0]
            .1,
        Outcome::Ack(7)
    );
    assert_eq!(second.revision(), 7);
}
