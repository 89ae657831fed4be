#!/usr/bin/env bash
# The packed CLI, installed in an empty directory with no access to this repository (the
# registry only), backs up and restores: `efs-backup` as a user gets it. Run after a build.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/efs-backup-install-check.XXXXXX)"
trap 'rm -rf "$work"' EXIT

npm pack -w efs-backup --pack-destination "$work" --silent >/dev/null
tarball="$(ls "$work"/efs-backup-*.tgz)"

# `npm install -g`, as a user installs it, into a prefix of its own (not the system's). npm runs a
# dependency's install script only when approved: better-sqlite3 builds its addon.
npm install -g --prefix "$work/prefix" --allow-scripts=better-sqlite3 \
  --no-audit --no-fund --silent "$tarball"
bin="$work/prefix/bin/efs-backup"

cd "$work"  # anywhere but the repository
mkdir -p src/dir dst
echo "installed from the tarball" >src/dir/file
ln -s dir/file src/link
"$bin" --version
"$bin" backup --source src --destination dst --json | grep -q '"Status": "Success"'
"$bin" restore --destination dst --snapshot latest --target restored >/dev/null
if [ -n "$(rsync -aHcn --delete --itemize-changes src/ restored/)" ]; then
  echo "install check: the restore differs from the source" >&2
  exit 1
fi
"$bin" history --destination dst >/dev/null
# The daemon, with its human log lines (pino-pretty, bundled): a job due every second; once its
# first run is logged, SIGTERM stops it (exit 0).
cat >efs-backup.yaml <<'YAML'
jobs:
  - name: check
    source: src
    destination: dst
    label: daemon
    schedule: '* * * * * *'
YAML
"$bin" run --config efs-backup.yaml --log-format pretty 2>run.log &
daemon=$!
for _ in $(seq 1 300); do
  grep -q 'check: Success' run.log && break
  sleep 0.1
done
kill -TERM "$daemon"
if ! wait "$daemon" || [ ! -e dst/daemon/latest ] ||
  ! grep -Eq '^\[[0-9-]+ [0-9:]+\] INFO: job check: Success' run.log; then
  echo "install check: efs-backup run did not back up, log a human line and stop on SIGTERM:" >&2
  cat run.log >&2
  exit 1
fi
echo "install check: the packed CLI installs (-g), backs up, restores and runs its daemon ($(basename "$tarball"))"
