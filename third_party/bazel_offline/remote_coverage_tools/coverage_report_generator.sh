#!/bin/sh
echo "coverage_report_generator: coverage is not supported by this offline stand-in" >&2
exit 1
