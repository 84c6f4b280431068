-- Revenue per day, in a table partitioned by day(order_date). Each run replaces the days
-- from `revenue_since` on (all of them by default) and leaves the older days' files alone.
{{ config(
    mode='replace_where',
    where="order_date >= DATE '" ~ var('revenue_since') ~ "'",
    partition_by='day(order_date)',
) }}
select order_date, count(*) as orders, sum(amount_cents) as revenue_cents
from {{ source('raw', 'orders_completed') }}
where order_date >= DATE '{{ var("revenue_since") }}'
group by order_date
