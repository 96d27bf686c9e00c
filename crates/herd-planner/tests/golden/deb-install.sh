#!/bin/sh
# Herd install script: deb package of vaccine-b 7.0 (b-1112).
# Run by herd-agent with HERD_PACKAGE set to the downloaded file.
set -eu
sha256='abababababababababababababababababababababababababababababababab'
size=2345
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
dpkg --install "$package"
