"""Files copied verbatim into the Splunk SOAR app project that
integration.platforms.splunk_soar writes (they import soar_sdk: never import them here)."""
