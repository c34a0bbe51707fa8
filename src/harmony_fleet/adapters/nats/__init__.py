"""NATS adapter: the embedded server, connections that reconnect forever, typed KV and bus."""
