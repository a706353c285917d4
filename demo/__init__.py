"""The bundled demo: a small shop whose backend is traced by the real Elastic APM Python
agent, so that with the proxy in front one trace runs from the browser to the backend."""
