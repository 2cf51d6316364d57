# An all-in-one OpenStack Swift (proxy with tempauth, account, container and object servers,
# memcached) from Debian's own swift packages, for the kind end-to-end test (run.sh).
#   docker build -f tests/e2e/kind/Dockerfile.swift -t swift-aio:e2e tests/e2e/kind
# It also carries python-swiftclient, so the same image is the test's client pod.
FROM debian:bookworm-slim
# No init system in a container: package scripts must not try to start services.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      swift swift-proxy swift-account swift-container swift-object \
      python3-swiftclient memcached ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /srv /etc/swift \
 && chown -R swift:swift /srv /etc/swift
COPY swift-aio.sh /usr/local/bin/swift-aio
# Debian's swift user; the device lives on the pod's emptyDir at /srv (a filesystem with xattrs).
USER swift
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/swift-aio"]
