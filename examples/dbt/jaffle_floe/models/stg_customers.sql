select customer_id, email as email_hash, country, signup_date
from {{ source('raw', 'customers_masked') }}
