# Which DuckDB the host links, sourced by tests/setup and tests/run.
#
# FLOE_DUCKDB=shared (default): DuckDB 1.5.5's prebuilt libduckdb.so from the npm
#   registry (the package DuckDB's Node bindings ship), fetched once into
#   $FLOE_CACHE/duckdb and checked against a pinned sha256. Minutes, not most of an hour.
# FLOE_DUCKDB=bundled: compile DuckDB from source (cargo feature `bundled`, ~45 min on
#   2 cores the first time). Run the whole suite this way with
#   `FLOE_DUCKDB=bundled tests/run` whenever the DuckDB pin changes.
#
# Sets DUCKDB_LIB_DIR (shared) and FLOE_CARGO_FEATURES (the cargo flags to build with).

FLOE_CACHE="${FLOE_CACHE:-$HOME/.cache/floe}"
DUCKDB_NPM_PACKAGE="@duckdb/node-bindings-linux-x64@1.5.5-r.5"
DUCKDB_SO_SHA256="fc23f12e376c47be520f75221288281906e7942e8fd6f6ce4849198ba60d0405"
DUCKDB_SHARED_DIR="$FLOE_CACHE/duckdb/1.5.5-r.5"
FLOE_DUCKDB="${FLOE_DUCKDB:-shared}"

duckdb_cached() {
    [ -f "$DUCKDB_SHARED_DIR/libduckdb.so" ] &&
        echo "$DUCKDB_SO_SHA256  $DUCKDB_SHARED_DIR/libduckdb.so" | sha256sum --check --status
}

# Fetch the shared library unless a good copy is cached; a corrupt copy is replaced.
duckdb_fetch() {
    duckdb_cached && return 0
    local tmp
    tmp="$(mktemp -d)"
    if (cd "$tmp" && npm pack --silent "$DUCKDB_NPM_PACKAGE" >/dev/null 2>npm.log &&
        tar -xzf ./*.tgz package/libduckdb.so) &&
        echo "$DUCKDB_SO_SHA256  $tmp/package/libduckdb.so" | sha256sum --check --status; then
        mkdir -p "$DUCKDB_SHARED_DIR"
        mv "$tmp/package/libduckdb.so" "$DUCKDB_SHARED_DIR/libduckdb.so"
        rm -rf "$tmp"
        return 0
    fi
    cat "$tmp/npm.log" >&2 2>/dev/null || true
    rm -rf "$tmp"
    return 1
}

duckdb_configure() {
    case "$FLOE_DUCKDB" in
    shared)
        export DUCKDB_LIB_DIR="$DUCKDB_SHARED_DIR"
        FLOE_CARGO_FEATURES=()
        ;;
    bundled)
        unset DUCKDB_LIB_DIR
        FLOE_CARGO_FEATURES=(--features bundled)
        ;;
    *)
        echo "FLOE_DUCKDB must be 'shared' or 'bundled', not '$FLOE_DUCKDB'" >&2
        return 1
        ;;
    esac
}
