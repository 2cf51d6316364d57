#!/usr/bin/env bash
# swiftfed end to end on a throwaway kind cluster, the way a user installs it:
#   0. build the operator's cluster tests (step 9) before any cluster exists
#   1. create a kind cluster (its own kubeconfig; your current context is not touched)
#   2. build the operator, sidecar and Swift images (deploy/docker/Dockerfile.*,
#      tests/e2e/kind/Dockerfile.swift from Debian's swift packages) and load them into kind
#   3. helm install deploy/helm/swiftfed
#   4. run two all-in-one Swift clusters (tempauth): swift-east and swift-west
#   5. label east's proxy pods for injection; check the sidecar was injected
#   6. apply a ClusterFederation: east's AUTH_test containers "archive-*" live in west
#   7. drive python-swiftclient through east's Service (the sidecar); check on each cluster
#      directly where every object landed, and the round trip
#   8. `kubectl get clusterfederations`: Ready, every sidecar in sync
#   9. the operator's cluster tests (cargo test -- --ignored) against the same API server
#  10. delete the cluster (always, also on failure; SWIFTFED_E2E_KEEP=1 keeps it)
#
# Needs: docker, kind, kubectl, helm, cargo. Exits non-zero on the first failed check.
# Environment: SWIFTFED_KIND_CLUSTER (name, default swiftfed-e2e), SWIFTFED_KIND_NODE_IMAGE
# (kindest/node image; Kubernetes >= 1.29 for native sidecars), SWIFTFED_E2E_KEEP=1.
set -euo pipefail

cd "$(dirname "$0")/../../.."

CLUSTER="${SWIFTFED_KIND_CLUSTER:-swiftfed-e2e}"
NODE_IMAGE="${SWIFTFED_KIND_NODE_IMAGE:-}"
KEEP="${SWIFTFED_E2E_KEEP:-0}"
TAG=e2e
SYSTEM_NS=swiftfed-system
EAST=swift-east
WEST=swift-west
SWIFT_IMAGE="swift-aio:${TAG}"

step() { printf '\n==> %s\n' "$*"; }
fail() {
    printf 'e2e FAILED: %s\n' "$*" >&2
    exit 1
}
need() {
    command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed (needs docker, kind, kubectl, helm, cargo)"
}

# Polls `check` (a command) until it succeeds or `seconds` pass.
wait_for() {
    local what="$1" seconds="$2"
    shift 2
    local deadline=$((SECONDS + seconds))
    echo "waiting (up to ${seconds}s) for ${what}"
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            fail "timed out waiting for ${what}"
        fi
        sleep 2
    done
}

for tool in docker kind kubectl helm cargo; do
    need "$tool"
done

step "0. building the operator's cluster tests first (a compile error costs no cluster)"
cargo test -p swiftfed-operator --test cluster --no-run

workdir="$(mktemp -d)"
export KUBECONFIG="${workdir}/kubeconfig"
created=0

diagnostics() {
    echo "---- diagnostics ----" >&2
    kubectl get pods -A -o wide >&2 || true
    kubectl -n "$EAST" get clusterfederations -o yaml >&2 || true
    kubectl -n "$SYSTEM_NS" logs -l app.kubernetes.io/component=operator --tail=100 --prefix >&2 || true
    kubectl -n "$EAST" logs -l app=swift-proxy -c swiftfed-sidecar --tail=50 --prefix >&2 || true
    for ns in "$EAST" "$WEST"; do
        kubectl -n "$ns" logs -l app=swift-proxy -c swift --tail=50 --prefix >&2 || true
    done
    kubectl get events -A --sort-by=.lastTimestamp >&2 || true
}

cleanup() {
    local rc=$?
    trap - EXIT
    if [ "$rc" -ne 0 ] && [ "$created" -eq 1 ]; then
        diagnostics
    fi
    if [ "$created" -eq 1 ]; then
        if [ "$KEEP" = 1 ]; then
            step "keeping kind cluster ${CLUSTER} (KUBECONFIG=${KUBECONFIG}; after step 9 the operator is scaled to 0)"
        else
            step "deleting kind cluster ${CLUSTER}"
            kind delete cluster --name "$CLUSTER" || true
        fi
    fi
    if [ "$KEEP" != 1 ]; then
        rm -rf "$workdir"
    fi
    if [ "$rc" -eq 0 ]; then
        echo "e2e PASSED"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "1. creating kind cluster ${CLUSTER}"
existing="$(kind get clusters 2>/dev/null)"
if grep -qx "$CLUSTER" <<<"$existing"; then
    fail "a kind cluster named ${CLUSTER} exists already; delete it or set SWIFTFED_KIND_CLUSTER"
fi
create_args=(create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG" --wait 120s)
if [ -n "$NODE_IMAGE" ]; then
    create_args+=(--image "$NODE_IMAGE")
fi
created=1
kind "${create_args[@]}"
kubectl version

step "2. building and loading images"
# (The ${a[@]+...} form: an empty array under set -u is an error in bash 3.2, macOS's bash.)
build_args=()
if docker buildx version >/dev/null 2>&1; then
    # --load: a non-default buildx builder would otherwise keep the image in its cache only.
    # --provenance=false: with Docker's containerd image store (the default of fresh Docker 29
    # installs) the attestation manifest is missing from `docker save`, and `kind load` fails
    # with "content digest ... not found" (kubernetes-sigs/kind#3795).
    build_args+=(--load --provenance=false)
fi
docker build ${build_args[@]+"${build_args[@]}"} -f deploy/docker/Dockerfile.operator -t "swiftfed-operator:${TAG}" .
docker build ${build_args[@]+"${build_args[@]}"} -f deploy/docker/Dockerfile.sidecar -t "swiftfed-sidecar:${TAG}" .
docker build ${build_args[@]+"${build_args[@]}"} -f tests/e2e/kind/Dockerfile.swift -t "$SWIFT_IMAGE" tests/e2e/kind
for image in "swiftfed-operator:${TAG}" "swiftfed-sidecar:${TAG}" "$SWIFT_IMAGE"; do
    kind load docker-image "$image" --name "$CLUSTER"
done

step "3. helm install swiftfed into ${SYSTEM_NS}"
helm upgrade --install swiftfed deploy/helm/swiftfed \
    --namespace "$SYSTEM_NS" --create-namespace \
    --set image.repository=swiftfed-operator --set image.tag="$TAG" --set image.pullPolicy=Never \
    --set sidecar.image.repository=swiftfed-sidecar --set sidecar.image.tag="$TAG" \
    --set sidecar.image.pullPolicy=Never \
    --wait --timeout 5m
# A replica is ready only once its webhook serves the certificate (the leader issues it, the
# standby re-reads the Secret every 30 s), so two ready replicas means both answer the webhook.
kubectl -n "$SYSTEM_NS" rollout status deployment/swiftfed-operator --timeout=180s
ready_replicas="$(kubectl -n "$SYSTEM_NS" get deployment swiftfed-operator -o jsonpath='{.status.readyReplicas}')"
[ "$ready_replicas" = 2 ] || fail "operator: ${ready_replicas:-0} of 2 replicas ready"
kubectl get crd clusterfederations.swiftfed.io >/dev/null || fail "the chart did not install the CRD"

ca_bundle_published() {
    local bundles
    bundles="$(kubectl get mutatingwebhookconfiguration swiftfed-sidecar-injector \
        -o jsonpath='{range .webhooks[*]}{.clientConfig.caBundle}{"\n"}{end}')"
    # Two entries (namespaces.swiftfed.io, pods.swiftfed.io), both with a caBundle.
    [ "$(grep -c . <<<"$bundles")" -eq 2 ]
}
wait_for "the operator to publish the webhook caBundle" 120 ca_bundle_published

step "4. two Swift clusters: ${EAST} (to be federated) and ${WEST} (the archive)"
# $1 namespace, $2 tempauth users, $3 Service targetPort (east: the sidecar's port 8090, by number:
# Services resolve named ports of native sidecars only from Kubernetes 1.32 on)
swift_cluster() {
    kubectl create namespace "$1"
    kubectl apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: swift-proxy, namespace: $1}
spec:
  replicas: 1
  selector: {matchLabels: {app: swift-proxy}}
  template:
    metadata:
      labels: {app: swift-proxy}
      annotations: {swiftfed.io/proxy-port: "8080"}
    spec:
      containers:
        - name: swift
          image: ${SWIFT_IMAGE}
          imagePullPolicy: Never
          env:
            - {name: SWIFT_USERS, value: "$2"}
            - {name: SWIFT_HASH_SUFFIX, value: "$1"}
          ports: [{name: swift, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /healthcheck, port: swift}
            periodSeconds: 2
          volumeMounts: [{name: srv, mountPath: /srv}]
      volumes: [{name: srv, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: swift, namespace: $1}
spec:
  selector: {app: swift-proxy}
  ports: [{name: swift, port: 8080, targetPort: $3}]
---
apiVersion: v1
kind: Service
metadata: {name: swift-direct, namespace: $1}
spec:
  selector: {app: swift-proxy}
  ports: [{name: swift, port: 8080, targetPort: swift}]
YAML
}
swift_cluster "$EAST" "test:tester:testing:.admin" 8090
swift_cluster "$WEST" "test:tester:testing:.admin;test:sidecar:sidecar-key:.admin" swift
for ns in "$EAST" "$WEST"; do
    kubectl -n "$ns" rollout status deployment/swift-proxy --timeout=300s
done
# The client: the same image (python-swiftclient), opted out of injection.
kubectl -n "$EAST" run client --image="$SWIFT_IMAGE" --image-pull-policy=Never \
    --labels=swiftfed.io/inject=disabled --restart=Never --command -- sleep infinity
kubectl -n "$EAST" wait pod/client --for=condition=Ready --timeout=120s

step "5. labelling ${EAST}'s proxy pods for injection"
injection_answers() {
    # A server-side dry run goes through the webhook: once it injects, the webhook serves the
    # certificate the API server trusts.
    local names
    names="$(kubectl -n "$EAST" run injection-probe --image="$SWIFT_IMAGE" --restart=Never \
        --labels=swiftfed.io/inject=enabled --dry-run=server \
        -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}' 2>/dev/null)" ||
        return 1
    [[ " $names " == *" swiftfed-sidecar "* ]]
}
wait_for "the webhook to inject" 120 injection_answers
kubectl -n "$EAST" patch deployment swift-proxy --type=merge \
    -p '{"spec":{"template":{"metadata":{"labels":{"swiftfed.io/inject":"enabled"}}}}}'
kubectl -n "$EAST" rollout status deployment/swift-proxy --timeout=300s
east_pods="$(kubectl -n "$EAST" get pods -l app=swift-proxy,swiftfed.io/inject=enabled \
    -o jsonpath='{range .items[*]}{.metadata.name}={.spec.initContainers[*].name} {.spec.containers[*].name}{"\n"}{end}')"
echo "$east_pods"
[ -n "$east_pods" ] || fail "no labelled proxy pod in ${EAST}"
while IFS= read -r line; do
    [[ " ${line#*=} " == *" swiftfed-sidecar "* ]] || fail "pod ${line%%=*} has no swiftfed-sidecar"
done <<<"$east_pods"
west_pods="$(kubectl -n "$WEST" get pods -l app=swift-proxy \
    -o jsonpath='{.items[*].spec.initContainers[*].name} {.items[*].spec.containers[*].name}')"
[[ " $west_pods " != *" swiftfed-sidecar "* ]] || fail "an unlabelled pod in ${WEST} was injected"

step "6. applying a ClusterFederation in ${EAST}"
kubectl apply -f - <<YAML
apiVersion: v1
kind: Secret
metadata: {name: west-credentials, namespace: ${EAST}}
type: Opaque
stringData:
  authUrl: http://swift.${WEST}.svc:8080/auth/v1.0
  user: "test:sidecar"
  key: sidecar-key
---
apiVersion: swiftfed.io/v1alpha1
kind: ClusterFederation
metadata: {name: archive, namespace: ${EAST}}
spec:
  proxySelector:
    matchLabels: {app: swift-proxy}
  clusters:
    - name: west
      endpoints: ["http://swift.${WEST}.svc:8080"]
      auth:
        mode: Credentials
        credentialsSecretRef: {name: west-credentials}
  routes:
    - match: {account: AUTH_test, container: {prefix: "archive-"}}
      target: {cluster: west}
YAML

federation_ready() {
    local fields ready selected in_sync missing
    fields="$(kubectl -n "$EAST" get clusterfederation archive -o \
        jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.sidecars.selected} {.status.sidecars.inSync} {.status.sidecars.missing}')"
    read -r ready selected in_sync missing <<<"$fields"
    [ "$ready" = True ] && [ "${selected:-0}" -ge 1 ] && [ "$in_sync" = "$selected" ] &&
        [ "$missing" = 0 ]
}
# The admin token Secret reaches the sidecar through the kubelet's volume sync (up to a minute or
# so); until then pushes are refused and retried every 5 s.
wait_for "ClusterFederation archive Ready with every sidecar in sync" 300 federation_ready

step "7. python-swiftclient through ${EAST}'s sidecar; where did the objects land?"
client() { kubectl -n "$EAST" exec client -- "$@"; }
# $1 Service URL, $2 user, $3 key, then swift arguments
swift_at() {
    local url="$1" user="$2" key="$3"
    shift 3
    # --timeout: a stuck request fails the run instead of hanging it (no timeout by default).
    client swift -A "${url}/auth/v1.0" -U "$user" -K "$key" --timeout 60 "$@"
}
front="http://swift.${EAST}.svc:8080" # the sidecar (Service targetPort 8090)
east_direct="http://swift-direct.${EAST}.svc:8080"
west_direct="http://swift.${WEST}.svc:8080"
via_sidecar() { swift_at "$front" test:tester testing "$@"; }
on_east() { swift_at "$east_direct" test:tester testing "$@"; }
on_west() { swift_at "$west_direct" test:tester testing "$@"; }

client sh -c 'head -c 3145728 /dev/urandom > /tmp/payload && md5sum < /tmp/payload > /tmp/payload.md5'
via_sidecar upload --object-name report.bin archive-2026 /tmp/payload
via_sidecar upload --object-name notes.bin local-data /tmp/payload

on_west stat archive-2026 report.bin >/dev/null || fail "routed object is not on ${WEST}"
if on_east stat archive-2026 report.bin >/dev/null 2>&1; then
    fail "routed object landed on ${EAST}"
fi
on_east stat local-data notes.bin >/dev/null || fail "unrouted object is not on ${EAST}"
if on_west stat local-data notes.bin >/dev/null 2>&1; then
    fail "unrouted object landed on ${WEST}"
fi
echo "archive-2026/report.bin is on ${WEST} only; local-data/notes.bin is on ${EAST} only"

via_sidecar download --output /tmp/report.back archive-2026 report.bin
client sh -c 'md5sum < /tmp/report.back | cmp - /tmp/payload.md5' ||
    fail "the routed object read back through the sidecar differs"
listing="$(via_sidecar list archive-2026)"
[ "$listing" = report.bin ] || fail "listing of archive-2026 through the sidecar: ${listing}"
echo "round trip through the sidecar: identical bytes; listing: ${listing}"

step "8. kubectl get clusterfederations"
kubectl -n "$EAST" get clusterfederations
row="$(kubectl -n "$EAST" get clusterfederations --no-headers)"
read -r name ready synced _ <<<"$row"
if [ "$name" != archive ] || [ "$ready" != True ]; then
    fail "not Ready: ${row}"
fi
if [ "${synced%/*}" != "${synced#*/}" ] || [ "${synced%/*}" -lt 1 ]; then
    fail "sidecars not all in sync: ${row}"
fi
echo "archive: Ready, sidecars in sync ${synced}"

step "9. the operator's cluster tests (cargo test -- --ignored)"
# They run their own controller in-process: the installed operator steps aside so two
# controllers do not reconcile the same federations.
kubectl -n "$SYSTEM_NS" scale deployment/swiftfed-operator --replicas=0
operator_gone() {
    [ -z "$(kubectl -n "$SYSTEM_NS" get pods -l app.kubernetes.io/component=operator -o name)" ]
}
wait_for "the operator's pods to stop" 120 operator_gone
cargo test -p swiftfed-operator --test cluster -- --ignored

step "10. done"
