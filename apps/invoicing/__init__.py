"""Invoicing, a bounded context: the customer directory, billing accounts, invoices and credit notes, their
numbers and PDFs (`services/` says which module holds which story); RouteCalculated issues an invoice.

It may import outbox's `publish`, consumers' registry, contracts and common; never routing.
"""
