"""The operator's HTTP side: health probes, Prometheus metrics, a JSON API and a live dashboard.

Off unless ``fleet operator --http HOST:PORT`` (loopback by default); everything but the probes
needs a token (:mod:`.tokens`). Built as an operator extension (:class:`.server.HttpServer`)
that reads the operator's memory and never writes to it: the registry, the coordinator, and a
timeline of its own fed by the registry's upgrade listener (:mod:`.timeline`). Needs the
``[dashboard]`` extra (aiohttp, prometheus-client); the page is static files shipped in the
package (``static/``), with no build step. docs/dashboard.md.
"""
