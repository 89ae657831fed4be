#!/usr/bin/env bash
# The packed CLI, installed in an empty directory with no access to this repository (the
# registry only), backs up and restores: `efs-backup` as a user gets it. Run after a build.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/efs-backup-install-check.XXXXXX)"
trap 'rm -rf "$work"' EXIT

npm pack -w efs-backup --pack-destination "$work" --silent >/dev/null
tarball="$(ls "$work"/efs-backup-*.tgz)"

mkdir "$work/app"
cd "$work/app"
npm init -y >/dev/null
# npm runs a dependency's install script only when approved: better-sqlite3 builds its addon.
npm pkg set allowScripts.better-sqlite3=true --json
npm install --no-audit --no-fund --silent "$tarball"
bin="$work/app/node_modules/.bin/efs-backup"

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
echo "install check: the packed CLI installs, backs up and restores ($(basename "$tarball"))"
