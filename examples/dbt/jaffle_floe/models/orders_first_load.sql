select order_id, customer_id, status, amount_cents
from {{ source('raw', 'orders_first_load') }}
