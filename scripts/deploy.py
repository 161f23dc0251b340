"""`make deploy`'s cluster side, with the Helm v4 SDK (helm-python-sdk, from make setup's venv):
no helm binary is needed.

  deploy.py check                  one line and exit 1 unless the current kube context answers
  deploy.py context                prints the current context's name
  deploy.py install REPO TAG PULL  installs or upgrades the chart, waits for the agents and the
                                   Collector, and runs `helm test`
Environment: RELEASE (otel-netprobe), NAMESPACE (otel-netprobe), VALUES (an extra values file).
"""

import os
import sys

import helm_python as helm
import yaml

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "charts", "otel-netprobe")
RELEASE = os.environ.get("RELEASE", "otel-netprobe")
NAMESPACE = os.environ.get("NAMESPACE", "otel-netprobe")


def fail(reason):
    print("make deploy: %s" % reason, file=sys.stderr)
    sys.exit(1)


def current_context():
    paths = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    for path in paths.split(os.pathsep):
        try:
            with open(path, encoding="utf-8") as f:
                ctx = (yaml.safe_load(f) or {}).get("current-context")
        except OSError:
            continue
        if ctx:
            return ctx
    fail("no Kubernetes cluster: no kubeconfig ($KUBECONFIG or ~/.kube/config) names a current context")
    return None


def check():
    ctx = current_context()
    with helm.Config(namespace=NAMESPACE) as cfg:
        try:
            cfg.check_reachable()
        except helm.HelmError as e:
            fail("the current kube context %r does not answer: %s" % (ctx, str(e).splitlines()[0]))
    print(ctx)


def install(repo, tag, pull):
    values = {"image": {"repository": repo, "tag": tag, "pullPolicy": pull}}
    extra = os.environ.get("VALUES")
    if extra:
        with open(extra, encoding="utf-8") as f:
            values = helm.Chart.load(CHART).merge_values({**(yaml.safe_load(f) or {}), **values})
    with helm.Config(namespace=NAMESPACE) as cfg:
        existing = [r for r in cfg.list() if r.get("name") == RELEASE]
        if existing:
            rel = cfg.upgrade(CHART, RELEASE, values, namespace=NAMESPACE, wait="watcher", timeout=300)
        else:
            rel = cfg.install(CHART, RELEASE, values, namespace=NAMESPACE, create_namespace=True,
                              wait="watcher", timeout=300)
        print("release %s revision %s: %s" % (RELEASE, rel.get("version"), rel.get("info", {}).get("status")))
        cfg.test(RELEASE)
        print("helm test %s: passed" % RELEASE)
        notes = rel.get("info", {}).get("notes")
        if notes:
            print(notes)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        fail(__doc__)
    cmd = sys.argv[1]
    if cmd == "check":
        check()
    elif cmd == "context":
        print(current_context())
    elif cmd == "install":
        install(*sys.argv[2:5])
    else:
        fail("unknown command %s" % cmd)
