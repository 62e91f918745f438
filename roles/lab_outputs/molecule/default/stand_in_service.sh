#!/bin/sh
# A stand-in local service for the scenario: ignores its arguments (--lab <lab> ...) and reports a URL as the
# local runtime does.
echo '{"changed": false, "api_url": "http://127.0.0.1:9/prod", "lab_echoed": true}'
