"""The Kubernetes mode of the operator: ``Device`` resources as a reflection and a desired state.

NATS KV stays the source of truth for what devices do. This package only mirrors it into one
``Device`` resource per device (status) and turns a change of ``Device.spec.agentVersion`` into
an upgrade marker, so that ``kubectl`` and GitOps tools can drive upgrades.

It is kept thin, in two halves:

* pure modules with no Kubernetes import, unit-tested without any API: :mod:`.resources`
  (names), :mod:`.bodies` (the resource's shape), :mod:`.statuses` (record -> status),
  :mod:`.decisions` (spec -> marker or a problem), :mod:`.crd` (the CRD, generated from the
  contracts);
* adapters that only talk to the API: :mod:`.api` (kubernetes_asyncio), :mod:`.handlers`
  (kopf), :mod:`.reflector` and :mod:`.extension` (the wiring, an operator ``Extension``).

Nothing here is imported unless ``fleet operator --kubernetes`` asks for it; kopf and
kubernetes_asyncio come from the optional ``[kubernetes]`` extra.
"""
