#!/usr/bin/env bash
# Entry point of the all-in-one Swift image: writes the configuration, builds one-device rings,
# starts memcached and the account/container/object servers on 127.0.0.1 and runs the proxy
# (0.0.0.0:8080, tempauth) in the foreground. Exits when any of them exits.
#
# SWIFT_USERS: tempauth users, "account:user:key:groups" separated by ";"
#   (e.g. "test:tester:testing:.admin;test:sidecar:sidecar-key:.admin").
# SWIFT_HASH_SUFFIX: the cluster's hash path suffix (any string; differs per cluster).
# SWIFT_RUN_AS: the user the servers run as (default swift, the image's user).
set -euo pipefail

: "${SWIFT_USERS:?set SWIFT_USERS}"
: "${SWIFT_HASH_SUFFIX:?set SWIFT_HASH_SUFFIX}"
conf=/etc/swift
devices=/srv/node
mkdir -p "$devices/d1"

cat >"$conf/swift.conf" <<CONF
[swift-hash]
swift_hash_path_prefix = swiftfed
swift_hash_path_suffix = ${SWIFT_HASH_SUFFIX}

[storage-policy:0]
name = gold
default = yes
CONF

backend() { # kind port
    cat >"$conf/$1-server.conf" <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $2
workers = 1
devices = ${devices}
mount_check = false
user = ${SWIFT_RUN_AS:-swift}
log_name = $1-server

[pipeline:main]
pipeline = healthcheck $1-server

[app:$1-server]
use = egg:swift#$1

[filter:healthcheck]
use = egg:swift#healthcheck
CONF
}
backend account 6202
backend container 6201
backend object 6200

users=""
IFS=';' read -r -a entries <<<"$SWIFT_USERS"
for entry in "${entries[@]}"; do
    IFS=':' read -r account user key groups <<<"$entry"
    users+="user_${account}_${user} = ${key} ${groups}"$'\n'
done

cat >"$conf/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 0.0.0.0
bind_port = 8080
workers = 1
user = ${SWIFT_RUN_AS:-swift}
log_name = proxy-server

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats tempauth copy slo dlo symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
${users}
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:11211

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:symlink]
use = egg:swift#symlink
CONF

cd "$conf"
for ring in account:6202 container:6201 object:6200; do
    name="${ring%%:*}"
    port="${ring##*:}"
    if [ ! -f "$name.ring.gz" ]; then
        swift-ring-builder "$name.builder" create 10 1 1
        swift-ring-builder "$name.builder" add "r1z1-127.0.0.1:${port}/d1" 100
        swift-ring-builder "$name.builder" rebalance
    fi
done

stop_children() {
    local listed children
    listed="$(jobs -p)"
    [ -n "$listed" ] || return 0
    mapfile -t children <<<"$listed"
    kill "${children[@]}" 2>/dev/null || true
}
# PID 1 in the container: without a handler SIGTERM would be ignored until the kubelet's SIGKILL.
trap 'stop_children; exit 0' TERM INT
# -v: the servers log to stderr too (kubectl logs), not only to a syslog the image does not run.
memcached -l 127.0.0.1 -p 11211 -U 0 &
swift-account-server "$conf/account-server.conf" -v &
swift-container-server "$conf/container-server.conf" -v &
swift-object-server "$conf/object-server.conf" -v &
# The proxy (and so the pod's readiness on /healthcheck) comes up only once every backend
# listens: a ready pod answers requests instead of 503s.
for port in 11211 6202 6201 6200; do
    tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -ge 300 ]; then
            echo "swift-aio: nothing listens on 127.0.0.1:${port} after 60 s" >&2
            stop_children
            exit 1
        fi
        sleep 0.2
    done
done
swift-proxy-server "$conf/proxy-server.conf" -v &
echo "swift-aio: proxy on 0.0.0.0:8080"
# Any server that stops ends the pod (the kubelet restarts it). `|| status=$?`: under set -e a
# failed child would end the script before it says which.
status=0
wait -n || status=$?
echo "swift-aio: a server exited (status ${status})" >&2
stop_children
exit 1
