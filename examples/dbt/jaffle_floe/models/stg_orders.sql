select order_id, customer_id, order_date, amount_cents
from {{ source('raw', 'orders_completed') }}
