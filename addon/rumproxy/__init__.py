"""Inject a Real User Monitoring agent into HTML pages passing through mitmproxy,
and link the browser's page load to the backend's request in one W3C trace."""

__version__ = "0.1.0"
