//! End to end without Kubernetes: the operator's reconcile against an in-memory API server
//! (objects in a map, answered through kube's mocked client), real sidecar processes as the
//! pods, and real Swift clusters. A federation created → objects of its routed containers land
//! in the target cluster through every sidecar; deleted → they stay local again.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::events::Reporter;
use serde_json::{json, Value};
use swiftfed_crds::federation::ClusterFederation;
use swiftfed_operator::controller::{reconcile, Context};
use swiftfed_operator::metrics::Metrics;
use swiftfed_operator::push::Pusher;
use swiftfed_operator::sync::Syncer;
use swiftfed_operator::testing::{serve, FakeApi};
use swiftfed_tests::{free_port, http_request, scratch_dir, shared_pair, sidecar_bin, unique_name};

const TOKEN: &str = "e2e-admin-token";

struct Sidecar {
    child: Child,
    port: u16,
    admin_port: u16,
}

impl Sidecar {
    fn start(upstream: u16) -> Sidecar {
        let dir = scratch_dir()
            .expect("scratch")
            .join(unique_name("e2e-sidecar"));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("token"), TOKEN).expect("token");
        let (port, admin_port) = (free_port(), free_port());
        let child = Command::new(sidecar_bin())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", &format!("127.0.0.1:{upstream}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .arg("--admin-token-file")
            .arg(dir.join("token"))
            // The pod's labels, as the downward API mounts them.
            .arg("--pod-labels-file")
            .arg({
                std::fs::write(dir.join("labels"), "app=\"swift-proxy\"\n").expect("labels");
                dir.join("labels")
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sidecar");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http_request(
            "GET",
            &format!("http://127.0.0.1:{admin_port}/ready"),
            &[],
            b"",
        )
        .is_ok_and(|r| r.status == 200)
        {
            assert!(Instant::now() < deadline, "sidecar not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sidecar {
            child,
            port,
            admin_port,
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(name: &str, sidecar: &Sidecar) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "swift", "labels": {"app": "swift-proxy"},
                     "annotations": {"swiftfed.io/admin-port": sidecar.admin_port.to_string()}},
        "spec": {"initContainers": [{"name": "swiftfed-sidecar", "image": "swiftfed-sidecar", "restartPolicy": "Always"}],
                 "containers": [{"name": "swift-proxy", "image": "swift"}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1",
                   "initContainerStatuses": [{"name": "swiftfed-sidecar", "ready": true, "restartCount": 0, "image": "x", "imageID": "x"}]}})
}

const NS: &str = "/api/v1/namespaces/swift";
const FEDS: &str = "/apis/swiftfed.io/v1alpha1/namespaces/swift/clusterfederations";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federation_created_routes_through_every_sidecar_and_deleted_stays_local() {
    let [a, b] = shared_pair();
    let sidecars = [
        Sidecar::start(a.proxy_port()),
        Sidecar::start(a.proxy_port()),
    ];
    let prefix = unique_name("e2e");

    let api = Arc::new(Mutex::new(FakeApi::default()));
    let federation = json!({"apiVersion": "swiftfed.io/v1alpha1", "kind": "ClusterFederation",
        "metadata": {"name": "archive", "namespace": "swift", "uid": "uid-1", "generation": 1,
                     "resourceVersion": "1", "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": {"proxySelector": {"matchLabels": {"app": "swift-proxy"}},
                 "clusters": [{"name": "b", "endpoints": [b.proxy_url()],
                               "auth": {"mode": "Credentials", "credentialsSecretRef": {"name": "b-creds"}}}],
                 "routes": [{"match": {"account": "AUTH_test", "container": {"prefix": prefix}}, "target": {"cluster": "b"}}]}});
    {
        let mut api = api.lock().expect("api");
        api.objects
            .insert(format!("{FEDS}/archive"), federation.clone());
        api.objects.insert(
            format!("{NS}/secrets/b-creds"),
            json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "b-creds", "namespace": "swift"},
            "stringData": {"authUrl": b.auth_url(), "user": "test:sidecar", "key": "sidecar-key"}}),
        );
        api.objects.insert(format!("{NS}/secrets/swiftfed-admin-token"), json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "swiftfed-admin-token", "namespace": "swift"}, "stringData": {"token": TOKEN}}));
        api.objects
            .insert(format!("{NS}/pods/proxy-0"), pod("proxy-0", &sidecars[0]));
        api.objects
            .insert(format!("{NS}/pods/proxy-1"), pod("proxy-1", &sidecars[1]));
    }
    let client = serve(api.clone());
    let ctx = Arc::new(Context {
        client: client.clone(),
        syncer: Syncer::new(client, Pusher::default(), 9901),
        reporter: Reporter {
            controller: "swiftfed-operator".into(),
            instance: None,
        },
        metrics: Arc::new(Metrics::default()),
        resync: Duration::from_secs(300),
    });

    let started = Instant::now();
    let fed: ClusterFederation = serde_json::from_value(federation).expect("federation");
    reconcile(Arc::new(fed), ctx.clone())
        .await
        .expect("reconcile");
    let elapsed = started.elapsed();
    let status = api.lock().expect("api").objects[&format!("{FEDS}/archive")]["status"].clone();
    assert_eq!(status["sidecars"]["summary"], "2/2", "{status}");
    assert!(
        elapsed < Duration::from_secs(5),
        "propagation took {elapsed:?}"
    );

    let (_, token_a) = a.auth("test:tester", "testing").expect("auth a");
    let (_, token_b) = b.auth("test:tester", "testing").expect("auth b");
    let put = |sidecar: &Sidecar, container: &str| {
        let base = format!("http://127.0.0.1:{}/v1/AUTH_test/{container}", sidecar.port);
        let r =
            http_request("PUT", &base, &[("X-Auth-Token", &token_a)], b"").expect("container PUT");
        assert_eq!(r.status / 100, 2, "{}", r.body_text());
        let r = http_request(
            "PUT",
            &format!("{base}/o"),
            &[("X-Auth-Token", &token_a)],
            b"data",
        )
        .expect("PUT");
        assert_eq!(r.status, 201, "{}", r.body_text());
    };
    let on = |cluster: &swiftfed_tests::SwiftCluster, token: &str, container: &str| {
        http_request(
            "HEAD",
            &format!("{}/{container}/o", cluster.storage_url("AUTH_test")),
            &[("X-Auth-Token", token)],
            b"",
        )
        .expect("HEAD")
        .status
    };
    for (i, sidecar) in sidecars.iter().enumerate() {
        let container = format!("{prefix}-{i}");
        put(sidecar, &container);
        assert_eq!(
            on(b, &token_b, &container),
            200,
            "through sidecar {i} the object lands on b"
        );
        assert_eq!(on(a, &token_a, &container), 404);
    }

    // Deleted: the finalizer's sync removes the routes from every sidecar.
    let deleting = {
        let mut api = api.lock().expect("api");
        let key = format!("{FEDS}/archive");
        let object = api.objects.get_mut(&key).expect("federation stored");
        object["metadata"]["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
        object.clone()
    };
    let fed: ClusterFederation = serde_json::from_value(deleting).expect("federation");
    reconcile(Arc::new(fed), ctx)
        .await
        .expect("reconcile deletion");
    let finalizers = api.lock().expect("api").objects[&format!("{FEDS}/archive")]["metadata"]
        ["finalizers"]
        .clone();
    assert_eq!(finalizers, json!([]), "finalizer released");
    for (i, sidecar) in sidecars.iter().enumerate() {
        let container = format!("{prefix}-after-{i}");
        put(sidecar, &container);
        assert_eq!(
            on(a, &token_a, &container),
            200,
            "after deletion, sidecar {i} keeps it local"
        );
        assert_eq!(on(b, &token_b, &container), 404);
    }
}
