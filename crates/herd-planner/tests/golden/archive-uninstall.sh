#!/bin/sh
# Herd uninstall script: archive package of vaccine-a 5.1.
# Run by herd-agent.
# HERD_PREFIX is the agent's product prefix.
set -eu
product='vaccine-a'
version='5.1'
pre_uninstall='bin/pre-uninstall'
prefix="${HERD_PREFIX:?HERD_PREFIX must name the product prefix}"
dir="$prefix/products/$product/$version"
if [ ! -d "$dir" ]; then
    echo "herd: $product $version is not installed under $prefix; nothing to remove" >&2
    exit 0
fi
if [ "$(readlink "$prefix/current" 2>/dev/null || true)" = "products/$product/$version" ]; then
    echo "herd: refusing to remove $product $version: it is the active product" >&2
    exit 1
fi
if [ -n "$pre_uninstall" ] && [ -e "$dir/$pre_uninstall" ]; then
    (cd "$dir" && "./$pre_uninstall")
fi
rm -rf -- "$dir"
rmdir -- "$prefix/products/$product" 2>/dev/null || true
