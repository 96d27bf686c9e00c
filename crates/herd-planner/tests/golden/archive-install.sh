#!/bin/sh
# Herd install script: archive package of vaccine-b 7.0 (b-1112).
# Run by herd-agent with HERD_PACKAGE set to the downloaded file.
# HERD_PREFIX is the agent's product prefix.
set -eu
sha256='abababababababababababababababababababababababababababababababab'
size=2345
product='vaccine-b'
version='7.0'
post_install='bin/post-install'
package="${HERD_PACKAGE:?HERD_PACKAGE must name the downloaded package}"
actual_size=$(wc -c < "$package" | tr -d ' ')
if [ "$actual_size" != "$size" ]; then
    echo "herd: $package is $actual_size bytes, expected $size" >&2
    exit 1
fi
actual_sha256=$(sha256sum < "$package" | cut -d ' ' -f 1)
if [ "$actual_sha256" != "$sha256" ]; then
    echo "herd: $package has SHA-256 $actual_sha256, expected $sha256" >&2
    exit 1
fi
prefix="${HERD_PREFIX:?HERD_PREFIX must name the product prefix}"
dir="$prefix/products/$product/$version"
staging="$dir.herd-staging"
rm -rf -- "$staging"
mkdir -p -- "$staging"
case $(od -An -tx1 -N4 < "$package" | tr -d ' \n') in
    1f8b*) gzip -dc < "$package" | tar -xf - -C "$staging" ;;
    28b52ffd) zstd -dcq < "$package" | tar -xf - -C "$staging" ;;
    *) tar -xf - -C "$staging" < "$package" ;;
esac
if [ "$(readlink "$prefix/current" 2>/dev/null || true)" = "products/$product/$version" ]; then
    echo "herd: $product $version is the active product; refusing to replace it in place" >&2
    rm -rf -- "$staging"
    exit 1
fi
rm -rf -- "$dir"
mv -- "$staging" "$dir"
if [ -n "$post_install" ]; then
    (cd "$dir" && "./$post_install")
fi
rm -f -- "$prefix/current.herd-new"
ln -s "products/$product/$version" "$prefix/current.herd-new"
mv -f -T -- "$prefix/current.herd-new" "$prefix/current"
