-- Incremental: merged into its table on order_id, reading only the orders newer than
-- those the table already holds (its own table, read through a floe source; empty
-- before the first run). A retried run merges the same rows again: no change.
{{ config(mode='merge', unique_key='order_id') }}
select order_id, customer_id, order_date, amount_cents
from {{ source('raw', 'orders_completed') }}
where order_id > (select coalesce(max(order_id), 0) from {{ source('floe_state', 'stg_orders_loaded') }})
