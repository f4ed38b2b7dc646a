"""Routing, a bounded context: depots, trucks, customers and routes; `route_calculate` plans a route and
publishes RouteCalculated; InvoiceGenerated marks a route invoiced.

It may import outbox (`publish`, and reads of its events), consumers (registry, ledger reads), contracts and
common; never invoicing.
"""
