"""Drives the Helm v4 SDK (helm-python-sdk) and kubernetes-validate for the Rust chart tests.

Usage (JSON on stdout; any failure exits non-zero with the reason on stderr):
  chart.py render CHART VALUES_JSON [RELEASE NAMESPACE]
      -> {"objects": [{"template": path, "object": {...}}, ...], "notes": "..."}
      (rendering failures, schema violations included, print {"error": "..."} and exit 3)
  chart.py lint CHART VALUES_JSON          -> the SDK's lint report, strict
  chart.py package CHART DIR               -> {"archive": path, "files": [names in the archive]}
  chart.py install KUBECONFIG CHART VALUES_JSON RELEASE NAMESPACE
      -> {"status": ..., "objects": [{...}, ...]} as `helm install --create-namespace` (the
      SDK's install action against the cluster KUBECONFIG names; the objects are the release's
      manifest); a refused install prints {"error": "..."} and exits 3
  chart.py uninstall KUBECONFIG RELEASE NAMESPACE -> {"info": ...} as `helm uninstall`
  chart.py releases KUBECONFIG NAMESPACE   -> {"releases": [names]} as `helm list`
  chart.py validate K8S_VERSION FILE       -> {"validated": [kind/name ...], "errors": [...]}
      every object against the Kubernetes schemas (strict: unknown fields are errors);
      prometheus-operator kinds, which kubernetes-validate does not know, against the subset of
      their CRD schemas that this chart uses (CRD_SCHEMAS below, written from the operator's API
      reference), also strict.
"""

import json
import logging
import sys
import tarfile

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml


def load_values(text):
    return json.loads(text) if text else None


def render(chart_dir, values, release="np", namespace="netprobe"):
    with helm.Chart.load(chart_dir) as chart:
        try:
            chart.validate_schema(values)
            manifests = chart.render(values, name=release, namespace=namespace, is_install=True)
        except helm.HelmError as e:
            return {"error": str(e)}
    objects, notes = [], ""
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append({"template": template, "object": doc})
    return {"objects": objects, "notes": notes}


def install(kubeconfig, chart_dir, values, release, namespace):
    cfg = helm.Config(kubeconfig_path=kubeconfig, namespace=namespace)
    with cfg, helm.Chart.load(chart_dir) as chart:
        try:
            r = cfg.install(chart, release, values, create_namespace=True, timeout=120)
        except helm.HelmError as e:
            return {"error": str(e)}
    objects = [doc for doc in yaml.safe_load_all(r.get("manifest", "")) if doc]
    return {"status": r.get("status"), "objects": objects}


def uninstall(kubeconfig, release, namespace):
    with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace) as cfg:
        r = cfg.uninstall(release, timeout=120)
    return {"info": r.get("info", "") if isinstance(r, dict) else str(r)}


def releases(kubeconfig, namespace):
    with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace) as cfg:
        return {"releases": sorted(r["name"] for r in cfg.list(all_states=True))}


_STR = {"type": "string"}
_STRMAP = {"type": "object", "additionalProperties": _STR}
_META = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": _STR, "namespace": _STR, "labels": _STRMAP, "annotations": _STRMAP},
    "additionalProperties": False,
}
_DURATION = {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}},
        "separator": _STR, "targetLabel": _STR, "regex": _STR, "modulus": {"type": "integer"},
        "replacement": _STR,
        "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                             "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep"]},
    },
}
_SECRET_KEY = {"type": "object", "required": ["key"], "additionalProperties": False,
               "properties": {"name": _STR, "key": _STR, "optional": {"type": "boolean"}}}
_SECRET_OR_CM = {"type": "object", "additionalProperties": False,
                 "properties": {"secret": _SECRET_KEY, "configMap": _SECRET_KEY}}
_TLS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "ca": _SECRET_OR_CM, "cert": _SECRET_OR_CM, "keySecret": _SECRET_KEY, "serverName": _STR,
        "insecureSkipVerify": {"type": "boolean"},
        "minVersion": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]},
        "maxVersion": {"enum": ["TLS10", "TLS11", "TLS12", "TLS13"]},
    },
}
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": _STR, "kind": _STR, "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": _STR,
                    "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                        "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": _STR}}},
                    "selector": {"type": "object", "additionalProperties": False, "properties": {
                        "matchLabels": _STRMAP, "matchExpressions": {"type": "array"}}},
                    "endpoints": {"type": "array", "minItems": 1, "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": _STR, "targetPort": {"type": ["string", "integer"]}, "path": _STR,
                            "scheme": {"enum": ["http", "https"]}, "tlsConfig": _TLS,
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION, "honorLabels": {"type": "boolean"},
                            "honorTimestamps": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": _RELABEL},
                            "metricRelabelings": {"type": "array", "items": _RELABEL},
                        },
                    }},
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": _STR, "kind": _STR, "metadata": _META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"groups": {"type": "array", "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1}, "interval": _DURATION,
                        "limit": {"type": "integer"},
                        "rules": {"type": "array", "items": {
                            "type": "object",
                            "required": ["expr"],
                            "additionalProperties": False,
                            "properties": {
                                "alert": _STR, "record": _STR, "expr": {"type": ["string", "integer"]},
                                "for": _DURATION, "keep_firing_for": _DURATION,
                                "labels": _STRMAP, "annotations": _STRMAP,
                            },
                        }},
                    },
                }}},
            },
        },
    },
}


def validate(version, path):
    with open(path, encoding="utf-8") as f:
        objects = json.load(f)
    validated, errors = [], []
    for obj in objects:
        name = "%s/%s" % (obj.get("kind"), obj.get("metadata", {}).get("name"))
        crd = CRD_SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
        try:
            if crd is not None:
                jsonschema.validate(obj, crd)
            else:
                kubernetes_validate.validate(obj, version, strict=True)
            validated.append(name)
        except jsonschema.ValidationError as e:
            errors.append("%s: %s at %s" % (name, e.message, "/".join(str(p) for p in e.absolute_path)))
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append("%s: %s" % (name, e.message))
    return {"validated": validated, "errors": errors}


def main(argv):
    logging.disable(logging.CRITICAL)
    cmd = argv[1]
    if cmd == "render":
        out = render(argv[2], load_values(argv[3]), *argv[4:6])
        print(json.dumps(out))
        return 3 if "error" in out else 0
    if cmd == "lint":
        print(json.dumps(helm.lint(argv[2], load_values(argv[3]), strict=True)))
        return 0
    if cmd == "package":
        archive = helm.package(argv[2], destination=argv[3])
        with tarfile.open(archive) as t:
            print(json.dumps({"archive": archive, "files": sorted(t.getnames())}))
        return 0
    if cmd == "install":
        out = install(argv[2], argv[3], load_values(argv[4]), argv[5], argv[6])
        print(json.dumps(out))
        return 3 if "error" in out else 0
    if cmd == "uninstall":
        print(json.dumps(uninstall(argv[2], argv[3], argv[4])))
        return 0
    if cmd == "releases":
        print(json.dumps(releases(argv[2], argv[3])))
        return 0
    if cmd == "validate":
        print(json.dumps(validate(argv[2], argv[3])))
        return 0
    print("unknown command %s" % cmd, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
