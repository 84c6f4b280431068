select
    c.customer_id,
    c.country,
    count(o.order_id) as orders,
    coalesce(sum(o.amount_cents), 0) as revenue_cents
from {{ ref('stg_customers') }} as c
left join {{ ref('stg_orders') }} as o using (customer_id)
group by c.customer_id, c.country
