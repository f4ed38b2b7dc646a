"""LogiFlow's database engine (`ENGINE = "apps.common.db"`): Django's PostgreSQL backend, plus writes deferred to
the end of their transaction (`base.DatabaseWrapper.defer_until_commit`)."""
