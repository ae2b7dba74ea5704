-- wrk script: POST /buy (the seed flash-sale engine's call) from a random user.
-- Usage: wrk -t2 -c64 -d10s -s scripts/wrk/buy.lua http://127.0.0.1:PORT
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
local headers = { ["Content-Type"] = "application/json" }
request = function()
    return wrk.format("POST", "/buy", headers, string.format('{"userId":%d}', math.random(1, 2000000000)))
end
-- Count answers by status, so sales (200) and refusals (400) can be told apart.
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function() statuses = {} end
response = function(status) statuses[status] = (statuses[status] or 0) + 1 end
done = function()
    local total = {}
    for _, thread in ipairs(threads) do
        local counts = thread:get("statuses")
        for status, n in pairs(counts) do total[status] = (total[status] or 0) + n end
    end
    for status, n in pairs(total) do io.write(string.format("status %d: %d\n", status, n)) end
end
