-- depends_on: {{ ref('stg_orders') }}
-- stg_orders is incremental: ref() would give only this run's new orders, so the whole
-- table is read back from the host (after stg_orders has merged them).
select
    c.customer_id,
    c.country,
    count(o.order_id) as orders,
    coalesce(sum(o.amount_cents), 0) as revenue_cents
from {{ ref('stg_customers') }} as c
left join {{ source('floe_state', 'stg_orders') }} as o using (customer_id)
group by c.customer_id, c.country
