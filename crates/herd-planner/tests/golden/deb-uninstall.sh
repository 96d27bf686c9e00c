#!/bin/sh
# Herd uninstall script: deb package of vaccine-a 5.1.
# Run by herd-agent.
set -eu
dpkg --remove 'vaccine-a'
