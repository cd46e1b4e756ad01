"""The request-side Lua filter for Envoy and Istio (LuaJIT): strip, forward, pick canary sides.

For every request, before the router:

- every client-sent ``X-Strangler-*`` header is removed (by prefix, whatever the name);
- from a peer outside ``proxy.trusted_proxies``: ``X-Forwarded-For`` becomes the peer address
  and ``Forwarded``/``X-Real-IP``/``X-Forwarded-Host``/``X-Forwarded-Port`` are dropped;
- an ``X-Request-ID`` that is not 1-200 safe characters is replaced;
- for each canary route, ``x-strangler-canary-N: service|monolith`` from our blake2b bucket
  over the route's salt and sticky key (header, cookie or peer address), so the routes match
  on that header and the same users land on the service as with our proxy.

The router then removes the ``x-strangler-canary-*`` headers before forwarding.
"""

from __future__ import annotations

import json

from strangler_proxy.export.plan import ExportPlan

# LuaJIT 2.1 (Envoy's): 64-bit arithmetic through the FFI's uint64_t and the bit library.
_BLAKE2B = r"""
local ffi = require("ffi")
local bit = require("bit")
local bxor, ror, bnot, bswap = bit.bxor, bit.ror, bit.bnot, bit.bswap
local U = ffi.typeof("uint64_t")
local IV = {
  0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
  0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL,
}
local SIGMA = {
  {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
  {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
  {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
  {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
  {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
  {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
  {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
  {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
  {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
  {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
}

local function mix(v, a, b, c, d, x, y)
  v[a] = v[a] + v[b] + x; v[d] = ror(bxor(v[d], v[a]), 32)
  v[c] = v[c] + v[d];     v[b] = ror(bxor(v[b], v[c]), 24)
  v[a] = v[a] + v[b] + y; v[d] = ror(bxor(v[d], v[a]), 16)
  v[c] = v[c] + v[d];     v[b] = ror(bxor(v[b], v[c]), 63)
end

local function word(block, offset)
  local w = U(0)
  for j = 8, 1, -1 do w = w * 256 + block:byte(offset + j) end
  return w
end

local function compress(h, block, counter, last)
  local m, v = {}, {}
  for i = 0, 15 do m[i] = word(block, i * 8) end
  for i = 0, 7 do v[i] = h[i]; v[i + 8] = IV[i + 1] end
  v[12] = bxor(v[12], U(counter))
  if last then v[14] = bnot(v[14]) end
  for r = 0, 11 do
    local s = SIGMA[(r % 10) + 1]
    mix(v, 0, 4, 8, 12, m[s[1]], m[s[2]]);   mix(v, 1, 5, 9, 13, m[s[3]], m[s[4]])
    mix(v, 2, 6, 10, 14, m[s[5]], m[s[6]]);  mix(v, 3, 7, 11, 15, m[s[7]], m[s[8]])
    mix(v, 0, 5, 10, 15, m[s[9]], m[s[10]]); mix(v, 1, 6, 11, 12, m[s[11]], m[s[12]])
    mix(v, 2, 7, 8, 13, m[s[13]], m[s[14]]); mix(v, 3, 4, 9, 14, m[s[15]], m[s[16]])
  end
  for i = 0, 7 do h[i] = bxor(h[i], v[i], v[i + 8]) end
end

local function latin1_to_utf8(text)
  return (text:gsub("[\128-\255]", function(c)
    local b = c:byte()
    return string.char(192 + math.floor(b / 64), 128 + b % 64)
  end))
end

-- strangler_proxy.routing.bucket: blake2b(salt \0 key, 8 bytes) read big-endian, mod 10000
local function compute_bucket(salt, key)
  local msg = salt .. "\0" .. latin1_to_utf8(key)
  local h = {}
  for i = 0, 7 do h[i] = IV[i + 1] end
  h[0] = bxor(h[0], 0x01010008ULL)
  local offset = 0
  while #msg - offset > 128 do
    compress(h, msg:sub(offset + 1, offset + 128), offset + 128, false)
    offset = offset + 128
  end
  local rest = msg:sub(offset + 1)
  compress(h, rest .. string.rep("\0", 128 - #rest), #msg, true)
  return tonumber(bswap(h[0]) % 10000ULL)
end

-- Users repeat: remember buckets (bounded, cleared when full, like the proxy's own cache).
local CACHE, CACHED, CACHE_SIZE = {}, 0, 65536

local function bucket(salt, key)
  local id = salt .. "\0" .. key
  local found = CACHE[id]
  if found ~= nil then return found end
  found = compute_bucket(salt, key)
  if #id <= 256 then
    if CACHED >= CACHE_SIZE then CACHE, CACHED = {}, 0 end
    CACHE[id] = found
    CACHED = CACHED + 1
  end
  return found
end
"""

_FILTER = r"""
local function joined(headers, name, sep)
  local n = headers:getNumValues(name)
  if n == 0 then return nil end
  local out = {}
  for i = 0, n - 1 do out[#out + 1] = headers:getAtIndex(name, i) end
  return table.concat(out, sep)
end

local function cookie_value(header, name)
  for part in (header .. ";"):gmatch("([^;]*);") do
    local k, v = part:match("^%s*([^=]-)=(.*)$")
    if k ~= nil and k == name then return (v:gsub("%s+$", "")) end
  end
  return nil
end

local function peer_ip(handle)
  local address = handle:streamInfo():downstreamDirectRemoteAddress() or ""
  local v6 = address:match("^%[(.*)%]:%d+$")
  return v6 or address:match("^(.*):%d+$") or address
end

local function ipv4(text)
  local a, b, c, d = text:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a == nil then return nil end
  return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end

local function trusted(ip)
  local number = ipv4(ip)
  if number == nil then return false end
  for _, net in ipairs(TRUSTED) do
    local size = 2 ^ (32 - net[2])
    if math.floor(number / size) == math.floor(net[1] / size) then return true end
  end
  return false
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local strip = {}
  for name, _ in pairs(headers) do
    if name:sub(1, 11) == "x-strangler" then strip[#strip + 1] = name end
  end
  for _, name in ipairs(strip) do headers:remove(name) end
  local ip = peer_ip(handle)
  if FORWARDING and not trusted(ip) then
    headers:replace("x-forwarded-for", ip)
    for _, name in ipairs({"forwarded", "x-real-ip", "x-forwarded-host", "x-forwarded-port"}) do
      headers:remove(name)
    end
  end
  local rid = headers:get("x-request-id")
  if rid == nil or #rid > 200 or rid:find("[^%w%._:/%+=@%-]") then
    headers:replace("x-request-id", string.format("%08x%08x", math.random(0, 2^31),
                                                  math.random(0, 2^31)))
  end
  for _, canary in ipairs(CANARIES) do
    local key
    if canary.kind == "header" then
      key = joined(headers, canary.name, ", ")
    elseif canary.kind == "cookie" then
      local raw = joined(headers, "cookie", "; ")
      if raw ~= nil then key = cookie_value(raw, canary.name) end
    end
    if key == nil or key == "" then key = ip end
    local side = bucket(canary.salt, key) < canary.threshold and "service" or "monolith"
    headers:replace(canary.header, side)
  end
  if #CANARIES > 0 then handle:clearRouteCache() end
end
"""


def canary_header(index: int) -> str:
    """The internal header carrying a canary route's side: ``x-strangler-canary-N``."""
    return f"x-strangler-canary-{index}"


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII


def render_lua(plan: ExportPlan, forwarding: bool = True) -> str:
    """The Lua filter's source for ``plan`` (its canary routes and trusted proxies).

    ``forwarding=False`` leaves ``X-Forwarded-*`` alone (Istio: the mesh's own settings,
    ``numTrustedProxies``, decide them).
    """
    canaries = ",\n".join(
        f"  {{header = {_lua_string(canary_header(r.index))}, salt = {_lua_string(r.salt)}, "
        f"kind = {_lua_string(r.sticky_kind)}, name = {_lua_string(r.sticky_name)}, "
        f"threshold = {r.threshold}}}" for r in plan.canary_routes)
    trusted = ", ".join(f"{{{_ipv4_number(c)}, {c.split('/')[1] if '/' in c else 32}}}"
                        for c in plan.trusted_proxies)
    return (f"-- generated by `strangler export` from {plan.source}\n"
            f"local CANARIES = {{\n{canaries}\n}}\nlocal TRUSTED = {{{trusted}}}\n"
            f"local FORWARDING = {'true' if forwarding else 'false'}\n"
            + _BLAKE2B + _FILTER)


def _ipv4_number(cidr: str) -> int:
    parts = [int(p) for p in cidr.split("/")[0].split(".")]
    return ((parts[0] * 256 + parts[1]) * 256 + parts[2]) * 256 + parts[3]


__all__ = ["canary_header", "render_lua"]
