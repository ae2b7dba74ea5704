-- POST /orders/async body for wrk (Benchmarks/http.sh, Benchmarks/postgres.sh): one customer, one item.
wrk.method = "POST"
wrk.body = '{"customer_id": 1234, "items": [{"product_id": "PROD-001", "quantity": 2, "price": 49.99}]}'
wrk.headers["Content-Type"] = "application/json"
