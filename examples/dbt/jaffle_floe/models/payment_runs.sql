-- Appends one row per payment method on every run (incremental-style history).
{{ config(mode='append') }}
select
    '{{ invocation_id }}' as run_id,
    method,
    count(*) as payments,
    sum(amount_cents) as amount_cents
from {{ source('raw', 'payments') }}
group by method
