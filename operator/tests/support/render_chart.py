"""Renders the swiftfed chart with the real Helm engine (helm-python-sdk binds Helm's Go SDK).

Usage: python render_chart.py CHART_DIR RELEASE NAMESPACE [--lint] < values.json
Prints one JSON object: {"ok": true, "manifests": {template: text}, "crds": [{name, data}]}
or {"ok": false, "error": Helm's message} (schema violations included). Exit 0 either way, so
the caller can assert on the message; anything else (no Helm library) exits non-zero.
With --lint: `helm lint --strict` against Kubernetes 1.29, printing Helm's report as JSON.
"""

import json
import sys

import helm_python as helm


def main() -> int:
    chart_dir, release, namespace = sys.argv[1:4]
    values = json.load(sys.stdin)
    if sys.argv[4:] == ["--lint"]:
        report = helm.lint(
            chart_dir, values, strict=True, namespace=namespace, kube_version="v1.29.0"
        )
        print(json.dumps(report))
        return 0
    chart = helm.Chart.load(chart_dir)
    try:
        # Helm's install path: values are checked against values.schema.json first.
        manifests = chart.render(values, name=release, namespace=namespace, is_install=True)
    except helm.HelmError as e:
        print(json.dumps({"ok": False, "error": str(e)}))
        return 0
    crds = [{"name": c["name"], "data": c["data"]} for c in chart.crds]
    print(json.dumps({"ok": True, "manifests": manifests, "crds": crds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
