"""The WineMeUp operator: WineModel and WineTraffic custom resources, reconciled by a pure core.

:mod:`services.operator.reconcile` (desired objects) and :mod:`services.operator.status`
(conditions from observed objects) and :mod:`services.operator.traffic` (WineTraffic
validation and convergence) are plain functions; :mod:`services.operator.kube` is the thin
layer that talks to the Kubernetes API server.
"""
