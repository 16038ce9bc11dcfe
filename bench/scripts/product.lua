-- wrk: product(sku) over GraphQL, or the plain endpoint (%(plain)s), 100 skus in turn
local skus = {}
for i = 0, %(n)d - 1 do skus[#skus + 1] = "Q-" .. i end
local n = 0
request = function()
  n = n + 1
  local sku = skus[(n %% #skus) + 1]
  if %(plain)s then
    return wrk.format("GET", "/bench/product?sku=" .. sku)
  end
  return wrk.format("POST", "/graphql", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer %(token)s"}, [[{"query":%(query)s,"variables":{"sku":"]] .. sku .. [["}}]])
end
