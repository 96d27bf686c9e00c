#!/bin/sh
# Herd uninstall script: apk package of vaccine-a 5.1.
# Run by herd-agent.
set -eu
pm uninstall 'com.maker_a.vaccine'
