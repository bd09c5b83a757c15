#!/bin/sh
# Regenerate deploy/helm/rendered/ with a real helm, after any change to the chart:
#   HELM=/path/to/helm deploy/helm/render.sh
# CI has no helm binary; test/deploy/helm-chart.test.ts renders the chart with its subset renderer
# and requires exactly these documents (and NOTES), so a chart change without a re-render fails
# there. docs/deploying.md says how to get helm from npm on a machine without a cluster.
set -eu
cd "$(dirname "$0")"
HELM=${HELM:-helm}
version=$("$HELM" version --short)

render() { # <name> [helm args...]
  name=$1
  shift
  args="$*"
  "$HELM" lint --strict mop-serve "$@"
  {
    echo "# (in deploy/helm) helm template mop-serve mop-serve --namespace mop${args:+ $args}"
    echo "# Rendered by helm $version (deploy/helm/render.sh). Do not edit: re-render."
    "$HELM" template mop-serve mop-serve --namespace mop "$@"
  } >"rendered/$name.yaml"
  # NOTES.txt is shown by install, not by template; a client-side dry run needs no cluster.
  "$HELM" install mop-serve mop-serve --namespace mop --dry-run=client "$@" |
    sed -n '/^NOTES:$/,$p' | tail -n +2 >"rendered/$name.NOTES.txt"
}

render default
render gpu -f mop-serve/ci/gpu-values.yaml
