"""Reconciliation reports for finance: per customer and period, what each side holds."""
