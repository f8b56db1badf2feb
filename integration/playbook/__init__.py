"""The playbook engine: YAML playbooks that chain the plugin's actions onto incoming alerts.

    model        load and validate a playbook (schemas/playbook.schema.json, JMESPath, actions)
    alerts       alert formats as data (integration/alert_formats.yaml): detect and extract
    steps        the builtin steps
    lookups      action steps: each distinct indicator once, concurrently, with a memo
    engine       run a playbook on one alert or on an analyst's inputs
    batch        a durable batch over a directory of alerts or an NDJSON file

`integration.playbooks` re-exports the public API.
"""
