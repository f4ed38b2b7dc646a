"""Invoicing's use cases (writes), one module per story; callers import each service from its module:

- `customers`: the customer directory learnt from routing's CustomerUpserted (`known_customer_upsert`).
- `billing_accounts`: finance's billing data and tariff per customer (`billing_account_create`/`_update`).
- `issuing`: invoices for calculated routes, single and batch, and the credit notes of recalculated routes.
- `numbering`: the year's counter lock and gapless numbers (`lock_year`, `allocate_numbers`), used by issuing.
- `pdfs`: queueing renders (by task name), rendering once per version, failures, re-render, the stale sweep.
- `delivery`: marking an invoice sent (`invoice_mark_sent`).

The modules may import models, selectors, `pdf`, `pricing`, each other's public names and the floors below
invoicing (outbox's `publish`, contracts, common); never `apps.invoicing.tasks` (tasks import services).
"""
