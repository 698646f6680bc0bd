#!/usr/bin/env bash
# The chart's verification tools, built or unpacked into .cache/ (gitignored). Safe to run twice:
# whatever is already there at the pinned version is kept.
#
#   .cache/bin/helm          go install helm.sh/helm/v3/cmd/helm (Go module proxy)
#   .cache/bin/kubeconform   go install github.com/yannh/kubeconform/cmd/kubeconform
#   .cache/bin/promtool      go install github.com/prometheus/prometheus/cmd/promtool, to parse the
#                            alert rules' and the dashboard's PromQL (the longest build: ~4 min cold)
#   .cache/k8s-schemas/      Kubernetes JSON schemas for `kubeconform -strict`, offline: kubeconform
#                            embeds none and fetches them from GitHub by default, so they come from
#                            the kubernetes-validate wheel on PyPI, with their references made local.
#
# Needs Go (>= 1.24; /usr/local/go/bin is tried) and Python 3 with pip. No prebuilt binary is fetched.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.cache/bin"
schemas="$root/.cache/k8s-schemas"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# The Kubernetes minor of that helm's client-go (k8s.io/client-go v0.37 -> 1.37): helm's release builds
# stamp it with -ldflags; `go install` alone would leave helm assuming Kubernetes 1.20.
HELM_KUBE_MINOR="${HELM_KUBE_MINOR:-37}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
# Prometheus' Go module version v0.3MM.P is Prometheus 3.MM.P.
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
KUBERNETES_VALIDATE_VERSION="${KUBERNETES_VALIDATE_VERSION:-1.37.0}"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a recent one.
KUBERNETES_VERSIONS="${KUBERNETES_VERSIONS:-1.25.0 1.37.0}"

log() { echo "helm-tools: $*" >&2; }

# go_install NAME VERSION PACKAGE [LDFLAGS]: skipped when .cache/bin/NAME.version records the same
# version and flags.
go_install() {
  local name=$1 version=$2 package=$3 ldflags="-s -w ${4:-}" stamp="$bin/$1.version"
  local want="$version $ldflags"
  if [ -x "$bin/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
    PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null 2>&1 || { log "go is not installed; cannot build $name"; exit 1; }
  log "go install $package@$version"
  local start=$SECONDS
  mkdir -p "$bin"
  GOBIN="$bin" GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}" \
    go install -trimpath -ldflags="$ldflags" "$package@$version"
  echo "$want" >"$stamp"
  log "$name $version built in $((SECONDS - start))s"
}

# The strict ("-local-strict") schemas of each version, laid out as kubeconform's
# {{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json.
# The wheel's schemas name an $id on kubernetes.io and refer to "/api/_definitions.json"; without the
# $id and with relative references they resolve among the local files.
unpack_schemas() {
  local stamp="$schemas/.version" want="$KUBERNETES_VALIDATE_VERSION $KUBERNETES_VERSIONS"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  local python=python3
  [ -x "$root/.venv/bin/python" ] && python="$root/.venv/bin/python"
  local tmp
  tmp=$(mktemp -d)
  log "pip download kubernetes-validate==$KUBERNETES_VALIDATE_VERSION (Kubernetes JSON schemas)"
  "$python" -m pip download -q --no-deps --only-binary=:all: \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" -d "$tmp"
  rm -rf "$schemas"
  mkdir -p "$schemas"
  "$python" - "$tmp"/kubernetes_validate-*.whl "$schemas" $KUBERNETES_VERSIONS <<'PY'
import json
import sys
import zipfile
from pathlib import Path

wheel, out, versions = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
with zipfile.ZipFile(wheel) as archive:
    for version in versions:
        prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"
        names = [n for n in archive.namelist() if n.startswith(prefix) and n.endswith(".json")]
        if not names:
            sys.exit(f"helm-tools: the wheel has no schemas for Kubernetes {version}")
        target = out / f"v{version}-local-strict"
        target.mkdir(parents=True)
        for name in names:
            schema = json.loads(archive.read(name))
            if not name.endswith("/_definitions.json"):
                schema.pop("$id", None)
            text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
            (target / Path(name).name).write_text(text)
PY
  rm -rf "$tmp"
  echo "$want" >"$stamp"
}

go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "\
-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_KUBE_MINOR \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_KUBE_MINOR"
go_install kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform \
  "-X main.version=$KUBECONFORM_VERSION"
go_install promtool "$PROMTOOL_VERSION" github.com/prometheus/prometheus/cmd/promtool
unpack_schemas
log "ready: $bin/{helm,kubeconform,promtool}, $schemas ($KUBERNETES_VERSIONS)"
