-- POST /buy for wrk (Benchmarks/http.sh, Benchmarks/postgres.sh): a new userId per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{"userId": ' .. counter .. '}')
end
