"""mde-enrich: Microsoft Defender for Endpoint machine enrichment for SOAR and SIEM."""

__version__ = "0.1.0"
USER_AGENT = f"mde-enrich/{__version__}"
