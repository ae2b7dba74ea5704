-- wrk script: POST /orders/async with a two-item order from a random customer (ids chosen by the server).
-- Usage: wrk -t2 -c64 -d10s -s scripts/wrk/async-order.lua http://127.0.0.1:PORT
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local headers = { ["Content-Type"] = "application/json" }
request = function()
    local body = string.format(
        '{"customer_id":%d,"items":[{"product_id":"PROD-001","quantity":2,"price":49.99},{"product_id":"PROD-002","quantity":1,"price":5.5}]}',
        math.random(1, 2000000000))
    return wrk.format("POST", "/orders/async", headers, body)
end
