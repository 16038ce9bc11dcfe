-- wrk: placeOrder over GraphQL, one line on one of %(n)d products in turn, or all on one
local n = 0
request = function()
  n = n + 1
  local sku = %(hot)s and "Q-0" or ("Q-" .. (n %% %(n)d))
  return wrk.format("POST", "/graphql", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer %(token)s"},
    [[{"query":"mutation($s: String!) { placeOrder(lines: [{sku: $s, quantity: 1}]) { position } }","variables":{"s":"]] .. sku .. [["}}]])
end
