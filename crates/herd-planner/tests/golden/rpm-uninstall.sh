#!/bin/sh
# Herd uninstall script: rpm package of vaccine-a 5.1.
# Run by herd-agent.
set -eu
rpm --erase 'vaccine-a'
